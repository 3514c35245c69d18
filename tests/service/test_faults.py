"""Issue 11 over HTTP: the identity-name rule of the library (422, never 404 or 500),
bounded metadata, a listing no record can break, a read-only gallery answering 503 with
the reason, and an audit line for every admin request, 500s included, with the gallery's
own records reconciled into the log at start-up."""

from __future__ import annotations

import json
import logging
import sqlite3
import unicodedata

import httpx

from twinshot.gallery import Actor, Gallery

from tests.service.conftest import png, glyph


def enroll(c: httpx.Client, live, name: str, cls: int = 0, **data) -> httpx.Response:
    return c.post(
        f"/v1/identities/{name}/images", files=[("images", ("x.png", png(glyph(cls))))], data=data, headers=live.headers(live.admin)
    )


def audit_lines(live) -> list[dict]:
    return [json.loads(line) for line in live.audit.read_text().splitlines()]


def test_names_follow_the_librarys_rule(start) -> None:
    live = start()
    with httpx.Client(base_url=live.url, timeout=30) as c:
        for raw in ("a%0Ab", "esc%1B", "%0A", "tab%09x"):
            r = enroll(c, live, raw)
            assert r.status_code == 422 and r.json()["error"] == "invalid_identity", (raw, r.text)
            r = c.delete(f"/v1/identities/{raw}", headers=live.headers(live.admin))
            assert r.status_code == 422 and r.json()["error"] == "invalid_identity", (raw, r.text)
        r = enroll(c, live, "x" * 129)
        assert r.status_code == 422 and r.json()["limit"] == "max_identity_chars"
        nfc, nfd = unicodedata.normalize("NFC", "Zoë"), unicodedata.normalize("NFD", "Zoë")
        assert enroll(c, live, nfc).status_code == 200
        r = enroll(c, live, nfd, cls=1)
        assert r.status_code == 409, r.text
        listed = c.get("/v1/identities", headers=live.headers(live.admin)).json()
        assert [i["name"] for i in listed["identities"]] == [nfc]
        assert c.delete(f"/v1/identities/{nfd}", headers=live.headers(live.admin)).status_code == 200


def test_metadata_depth_and_a_listing_no_record_breaks(start) -> None:
    live = start()
    with httpx.Client(base_url=live.url, timeout=30) as c:
        for depth in (17, 300, 1000):
            deep = "{" + '"a":{' * (depth - 1) + "}" * depth
            r = enroll(c, live, f"deep{depth}", metadata=deep)
            assert r.status_code in (413, 422) and r.json()["error"] in ("invalid_metadata", "metadata_too_large"), r.text
        assert enroll(c, live, "ok", metadata=json.dumps({"badge": 7})).status_code == 200
        assert enroll(c, live, "broken", cls=1).status_code == 200
        with sqlite3.connect(live.gallery) as db:  # a record damaged behind the service's back
            db.execute("UPDATE identities SET metadata = ? WHERE name = 'broken'", ("[" * 50_000,))
        r = c.get("/v1/identities", headers=live.headers(live.admin))
        assert r.status_code == 200, r.text
        rows = {i["name"]: i for i in r.json()["identities"]}
        assert rows["ok"]["metadata"] == {"badge": 7} and rows["broken"]["metadata"] == {} and rows["broken"]["metadata_error"]


def test_a_read_only_gallery_answers_503_and_says_so(start, make_gallery, caplog) -> None:
    path = make_gallery()
    with Gallery.open(path) as g:
        g.enroll("alice", [glyph(0)])
    with caplog.at_level(logging.WARNING, logger="twinshot.service"):
        live = start(path, config={"readonly": True})
    assert any("read-only" in r.getMessage() for r in caplog.records)
    with httpx.Client(base_url=live.url, timeout=30) as c:
        r = enroll(c, live, "bob", cls=1)
        assert r.status_code == 503 and r.json()["error"] == "read_only_gallery" and "read-only" in r.json()["message"]
        r = c.delete("/v1/identities/alice", headers=live.headers(live.admin))
        assert r.status_code == 503 and r.json()["error"] == "read_only_gallery"
        assert c.get("/v1/identities", headers=live.headers(live.admin)).status_code == 200
        r = c.post("/v1/identify", files={"image": ("q.png", png(glyph(0)))}, headers=live.headers(live.read))
        assert r.status_code == 200 and r.json()["identity"] == "alice"
    assert [(a["action"], a["status"]) for a in audit_lines(live)][-2:] == [("enroll", 503), ("delete", 503)]


def test_internal_errors_are_audited(start, monkeypatch) -> None:
    live = start()
    engine = live.app.state.engine

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(engine.gallery, "remove", explode)
    with httpx.Client(base_url=live.url, timeout=30) as c:
        assert enroll(c, live, "alice").status_code == 200
        r = c.delete("/v1/identities/alice", headers=live.headers(live.admin))
        assert r.status_code == 500 and "boom" not in r.text
    lines = audit_lines(live)
    assert lines[-1]["action"] == "delete" and lines[-1]["status"] == 500 and lines[-1]["outcome"] == "internal"
    assert lines[0]["outcome"] == "ok" and isinstance(lines[0]["change_id"], int)


def test_changes_missing_from_the_log_are_recovered_at_start_up(start, make_gallery) -> None:
    path = make_gallery()
    with Gallery.open(path, actor=Actor("cli")) as g:  # changes made while no service ran
        g.enroll("alice", [glyph(0)])
        g.enroll("bob", [glyph(1)])
        g.remove("bob")
    audit = path.with_name(path.name + ".audit.log")
    audit.write_text('{"time": "2020-01-01", "who": "x", "action": "enroll", "iden')  # cut by a crash
    live = start(path)
    lines = [json.loads(x) for x in live.audit.read_text().splitlines()[1:]]
    assert [(x["action"], x["who"], x["recovered"]) for x in lines] == [("enroll", "cli", True), ("enroll", "cli", True), ("delete", "cli", True)]
    assert lines[0]["identity"] == "alice" and lines[1]["identity"].startswith("forgotten:")
    with httpx.Client(base_url=live.url, timeout=30) as c:
        assert enroll(c, live, "carol", cls=3).status_code == 200
    last = json.loads(live.audit.read_text().splitlines()[-1])
    assert last["identity"] == "carol" and last["change_id"] == lines[-1]["change_id"] + 1
