"""The HTTP API on a real uvicorn server: every route's happy path, JSON field names that
match the CLI's ``--json``, the pages, the OpenAPI document and the security headers."""

from __future__ import annotations

import json

import httpx
import pytest

from twinshot.cli.main import cli

from tests.service.conftest import THRESHOLD


def enroll(c: httpx.Client, live, name: str, *images: bytes, data: dict | None = None, **params) -> httpx.Response:
    files = [("images", (f"{name}{i}.png", image, "image/png")) for i, image in enumerate(images)]
    return c.post(f"/v1/identities/{name}/images", files=files, data=data, params=params, headers=live.headers(live.admin))


def identify(c: httpx.Client, live, data: bytes, key: str | None = None, **params) -> httpx.Response:
    return c.post("/v1/identify", files={"image": ("query.png", data, "image/png")}, params=params, headers=live.headers(key or live.read))


def test_enroll_identify_search_verify_list_delete(start, faces) -> None:
    live = start()
    with httpx.Client(base_url=live.url, timeout=20) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        r = enroll(c, live, "alice", faces["alice"], data={"metadata": json.dumps({"badge": 17})})
        assert r.status_code == 200, r.text
        assert r.json() == {"identity": "alice", "image_ids": [1], "references": 1, "replaced": 0, "created": True}
        assert enroll(c, live, "bob", faces["bob"]).status_code == 200

        found = identify(c, live, faces["alice"], k=2).json()
        assert found["image"] == "query.png" and found["identity"] == "alice" and found["threshold"] == THRESHOLD
        assert found["score"] == pytest.approx(5.0, abs=1e-4) and 0.5 < found["probability"] <= 1
        assert [c_["identity"] for c_ in found["candidates"]] == ["alice", "bob"]
        assert found["candidates"][0]["score"] >= found["candidates"][1]["score"]
        nobody = identify(c, live, faces["stranger"]).json()
        assert nobody["identity"] is None and nobody["score"] < THRESHOLD and nobody["candidates"]

        hits = c.post("/v1/search", files=[("images", ("s.png", faces["bob"], "image/png"))], params={"k": 5}, headers=live.headers(live.read)).json()
        assert hits["k"] == 5 and len(hits["results"]) == 1 and hits["results"][0]["image"] == "s.png"
        neighbours = hits["results"][0]["neighbours"]
        assert [n["identity"] for n in neighbours] == ["bob", "alice"] and neighbours[0]["image_id"] == 2

        pair = c.post("/v1/verify", files={"image1": ("a.png", faces["alice"]), "image2": ("b.png", faces["alice"])}, headers=live.headers(live.read)).json()
        assert pair["same"] is True and pair["image1"] == "a.png" and set(pair) >= {"probability", "score", "threshold"}
        pair = c.post("/v1/verify", files={"image1": ("a.png", faces["alice"]), "image2": ("b.png", faces["stranger"])}, headers=live.headers(live.read)).json()
        assert pair["same"] is False
        claim = c.post("/v1/verify", files={"image": ("a.png", faces["alice"])}, data={"identity": "alice"}, headers=live.headers(live.read)).json()
        assert claim["identity"] == "alice" and claim["same"] is True and claim["score"] == pytest.approx(5.0, abs=1e-4)
        claim = c.post("/v1/verify", files={"image": ("a.png", faces["alice"])}, data={"identity": "bob"}, headers=live.headers(live.read)).json()
        assert claim["same"] is False and claim["score"] < THRESHOLD

        listed = c.get("/v1/identities", headers=live.headers(live.admin)).json()
        assert listed["n_identities"] == 2 and [p["name"] for p in listed["identities"]] == ["alice", "bob"]
        assert listed["identities"][0]["metadata"] == {"badge": 17} and listed["identities"][0]["references"] == 1
        assert c.get("/v1/identities", params={"offset": 1, "limit": 1}, headers=live.headers(live.admin)).json()["identities"][0]["name"] == "bob"

        assert c.delete("/v1/identities/alice", headers=live.headers(live.admin)).json() == {"identity": "alice", "removed": 1}
        assert identify(c, live, faces["alice"]).json()["identity"] is None


def test_enroll_modes_and_names_with_slashes(start, faces) -> None:
    live = start()
    with httpx.Client(base_url=live.url, timeout=20) as c:
        assert enroll(c, live, "Latin/character01", faces["alice"], faces["carol"]).json()["references"] == 2
        assert identify(c, live, faces["carol"]).json()["identity"] == "Latin/character01"
        r = enroll(c, live, "Latin/character01", faces["bob"])
        assert r.status_code == 409 and r.json()["error"] == "already_enrolled"
        added = enroll(c, live, "Latin/character01", faces["bob"], mode="add").json()
        assert added["created"] is False and added["references"] == 1
        replaced = enroll(c, live, "Latin/character01", faces["stranger"], mode="replace").json()
        assert replaced["replaced"] == 3
        assert identify(c, live, faces["alice"]).json()["identity"] is None
        assert c.delete("/v1/identities/Latin%2Fcharacter01", headers=live.headers(live.admin)).json()["removed"] == 1


def test_an_empty_gallery_answers_unknown(start, faces) -> None:
    live = start()
    with httpx.Client(base_url=live.url, timeout=20) as c:
        r = identify(c, live, faces["alice"])
        assert r.status_code == 200 and r.json()["identity"] is None and r.json()["candidates"] == []
        hits = c.post("/v1/search", files=[("images", ("s.png", faces["bob"]))], headers=live.headers(live.read)).json()
        assert hits["results"][0]["neighbours"] == []


def test_json_field_names_match_the_cli(start, faces, capsys, tmp_path) -> None:
    live = start()
    query = tmp_path / "query.png"
    query.write_bytes(faces["alice"])
    with httpx.Client(base_url=live.url, timeout=20) as c:
        enrolled = enroll(c, live, "alice", faces["alice"]).json()
        served = identify(c, live, faces["alice"], k=3).json()
        searched = c.post("/v1/search", files=[("images", ("query.png", faces["alice"]))], headers=live.headers(live.read)).json()
        listed = c.get("/v1/identities", headers=live.headers(live.admin)).json()
    assert cli(["gallery", "identify", str(live.gallery), str(query), "--k", "3", "--json"]) == 0
    (local,) = json.loads(capsys.readouterr().out)
    assert set(served) == set(local) and set(served["candidates"][0]) == set(local["candidates"][0])
    assert served["identity"] == local["identity"] and served["score"] == pytest.approx(local["score"], abs=1e-5)
    assert cli(["gallery", "search", str(live.gallery), str(query), "--json"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert set(searched) == set(local) - {"gallery"} and set(searched["results"][0]) == set(local["results"][0])
    assert set(searched["results"][0]["neighbours"][0]) == set(local["results"][0]["neighbours"][0])
    assert cli(["gallery", "list", str(live.gallery), "--json"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert set(listed["identities"][0]) == set(local["identities"][0]) and listed["n_identities"] == local["n_identities"]
    assert cli(["gallery", "enroll", str(live.gallery), "bob", str(query), "--json"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert set(enrolled) == set(local) - {"gallery"}


def test_pages_docs_and_headers(start) -> None:
    live = start()
    with httpx.Client(base_url=live.url, timeout=20) as c:
        assert c.get("/", follow_redirects=False).headers["location"] == "/door"
        for page in ("/door", "/admin"):
            r = c.get(page)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            assert "default-src 'self'" in r.headers["content-security-policy"]
            assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        assert c.get("/static/door.js").status_code == 200 and c.get("/static/style.css").status_code == 200
        paths = c.get("/openapi.json").json()["paths"]
        assert {"/v1/identify", "/v1/verify", "/v1/search", "/v1/identities", "/v1/identities/{identity}", "/healthz"} <= set(paths)
        assert "/v1/identities/{identity}/images" in paths
        assert c.get("/docs").status_code == 200
        info = c.get("/v1/info", headers=live.headers(live.read))
        assert info.headers["cache-control"] == "no-store"
        assert info.json()["threshold"] == THRESHOLD and info.json()["limits"]["max_images"] == 8
        assert info.json()["score_norm"] == "none"
        assert str(live.gallery.parent) not in info.text
