"""The stores through the command line (``twinshot gallery ... URI``), ``twinshot serve``
over a PostgreSQL gallery (a real HTTP server on 127.0.0.1), and ``twinshot gallery
migrate`` between stores, resumed after a ``kill -9``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twinshot.cli.main import cli
from twinshot.gallery import Gallery
from twinshot.gallery.stores import redact

from tests.gallery.helpers import clustered, saved_model
from tests.service.procs import env, serve


def run_json(capsys, *args):  # type: ignore[no-untyped-def]
    code = cli([str(a) for a in args] + ["--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("kind", ["postgresql", "milvus"])
def test_the_cli_flow_on_a_store(kind: str, request: pytest.FixtureRequest, capsys, tmp_path: Path, image_folder: Path) -> None:
    uri = request.getfixturevalue("pg_uri" if kind == "postgresql" else "milvus_uri")
    model = saved_model(tmp_path / "model")
    files = sorted(image_folder.rglob("*.png"))
    created = run_json(capsys, "gallery", "create", uri, "--model", model)
    assert created["n_embeddings"] == 0 and created["gallery"] == redact(uri)
    run_json(capsys, "gallery", "enroll-folder", uri, image_folder, "--no-progress")
    listed = run_json(capsys, "gallery", "list", uri)
    assert listed["n_identities"] == 8 and listed["n_embeddings"] == 40
    (hit,) = run_json(capsys, "gallery", "identify", uri, files[0], "--k", "3")
    assert hit["identity"] == "alphabet0/character01"
    found = run_json(capsys, "gallery", "search", uri, files[1], "--k", "5")
    assert len(found["neighbours"] if "neighbours" in found else found["results"][0]["neighbours"]) == 5
    claim = run_json(capsys, "gallery", "verify", uri, "alphabet0/character01", files[0])
    assert claim["same"]
    report = run_json(capsys, "gallery", "calibrate", uri, "--folder", image_folder, "--eer", "--n-pairs", "100", "--bootstrap", "20")
    assert run_json(capsys, "gallery", "list", uri)["threshold"] == pytest.approx(report["threshold"])
    assert run_json(capsys, "gallery", "remove", uri, "alphabet1/character04")["removed"] == 5
    checked = run_json(capsys, "gallery", "check", uri)
    assert checked["ok"] and checked["embeddings"] == 35
    assert cli(["gallery", "create", uri, "--model", str(model)]) == 2  # exists: one clear line
    assert capsys.readouterr().err.strip().startswith("error: ") 


def test_a_database_that_is_down_is_one_line(capsys, tmp_path: Path) -> None:
    uri = f"postgresql://bob:hunter2@/postgres/faces?host={tmp_path}&connect_timeout=1"
    assert cli(["gallery", "list", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "hunter2" not in err and "postgresql://bob:***@" in err and "cannot reach the database" in err


def test_serve_identifies_on_postgres(pg_uri: str, tmp_path: Path) -> None:
    from tests.service.conftest import ADMIN_NAME, glyph, new_keys, png

    model = saved_model(tmp_path / "model")
    with Gallery.create(pg_uri, model):
        pass
    keys, admin, _ = new_keys(tmp_path / "keys.json")
    server = serve(pg_uri, keys, admin, "--audit-log", str(tmp_path / "audit.log"))  # type: ignore[arg-type]
    try:
        c = server.client
        for i, name in enumerate(["alpha", "beta"]):
            r = c.post(f"/v1/identities/{name}/images", files={"images": ("a.png", png(glyph(i)))})
            assert r.status_code == 200, r.text
        r = c.post("/v1/identify", files={"image": ("q.png", png(glyph(1, jitter=1)), "image/png")}, params={"k": 2})
        assert r.status_code == 200, r.text
        assert r.json()["candidates"][0]["identity"] == "beta"
        assert c.delete("/v1/identities/alpha").status_code == 200
        assert [i["name"] for i in c.get("/v1/identities").json()["identities"]] == ["beta"]
    finally:
        server.stop()
    with Gallery.open(pg_uri) as g:
        assert g.identity_names() == ["beta"] and [a["who"] for a in g.audit()][-1] == ADMIN_NAME


def _source(path: Path, model: Path, n: int) -> Path:
    with Gallery.create(path, model, keep_images=True) as g:
        vecs = clustered(2 * n, g.dim, clusters=10, seed=0)
        g.enroll_many([(f"p{i:03d}", vecs[2 * i : 2 * i + 2], {"i": i}, [b"img%d" % i, b"img%d'" % i]) for i in range(n)])
        g.set_threshold(1.25)
    return path


def test_migrate_resumes_after_kill_9(pg_uri: str, tmp_path: Path) -> None:
    model = saved_model(tmp_path / "model")
    src = _source(tmp_path / "src.db", model, 60)
    # a migration killed (SIGKILL) after its second chunk of 10 identities
    code = (
        "import os, signal\n"
        "from twinshot.gallery.migrate import migrate\n"
        "def progress(done, total):\n"
        "    if done >= 20: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"migrate({str(src)!r}, {pg_uri!r}, chunk=10, progress=progress)\n"
    )
    killed = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with Gallery.open(pg_uri) as half:
        assert 0 < len(half) < 60 and len(half) % 10 == 0  # whole chunks only
    done = subprocess.run(
        [sys.executable, "-c", "from twinshot.cli.main import main; main()", "gallery", "migrate", str(src), pg_uri, "--chunk", "10", "--json"],
        env=env(), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["skipped_identities"] >= 20 and summary["copied_identities"] + summary["skipped_identities"] == 60
    with Gallery.open(src) as a, Gallery.open(pg_uri) as b:
        assert a.identity_names() == b.identity_names() and b.n_embeddings == 120 and b.threshold == 1.25
        assert [(r.name, r.metadata) for r in a.identities()] == [(r.name, r.metadata) for r in b.identities()]
        q = clustered(10, a.dim, clusters=10, seed=5)
        ra, rb = a.identify_embeddings(q, k=3), b.identify_embeddings(q, k=3)
        assert [[c.identity for c in x.candidates] for x in ra] == [[c.identity for c in x.candidates] for x in rb]
        assert b._store.images(b._store.image_ids_of(b._store.identity_id("p007")).tolist()) != {}
        assert b._store.meta()["migration_state"] == "done"
    again = subprocess.run(
        [sys.executable, "-c", "from twinshot.cli.main import main; main()", "gallery", "migrate", str(src), pg_uri, "--json"],
        env=env(), capture_output=True, text=True, timeout=300,
    )
    assert json.loads(again.stdout)["copied_identities"] == 0


def test_migrate_from_a_database_reads_one_chunk_at_a_time(pg_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL source is read by identity chunks (never whole), so a gallery bigger than
    memory migrates; the copy equals the source."""
    from twinshot.gallery.migrate import migrate
    from twinshot.gallery.stores.postgres import PostgresStore

    model = saved_model(tmp_path / "model")
    src = _source(tmp_path / "src.db", model, 23)
    migrate(src, pg_uri)

    def refuse(self):  # type: ignore[no-untyped-def]
        raise AssertionError("a database source was read whole")

    monkeypatch.setattr(PostgresStore, "load_rows", refuse)
    fetched: list[int] = []
    real = PostgresStore.rows_of_identities

    def counted(self, ids):  # type: ignore[no-untyped-def]
        fetched.append(len(ids))
        return real(self, ids)

    monkeypatch.setattr(PostgresStore, "rows_of_identities", counted)
    back = tmp_path / "back.db"
    summary = migrate(pg_uri, back, chunk=5)
    assert fetched == [5, 5, 5, 5, 3] and summary["embeddings"] == 46 and summary["copied_identities"] == 23
    monkeypatch.undo()
    with Gallery.open(src) as a, Gallery.open(back) as b:
        assert a.identity_names() == b.identity_names() and b.n_embeddings == a.n_embeddings
        q = clustered(8, a.dim, clusters=10, seed=4)
        ra, rb = a.identify_embeddings(q, k=3), b.identify_embeddings(q, k=3)
        assert [[(c.identity, round(c.score, 5)) for c in x.candidates] for x in ra] == [
            [(c.identity, round(c.score, 5)) for c in x.candidates] for x in rb
        ]


def test_migrate_to_milvus_and_refusals(milvus_uri: str, tmp_path: Path, capsys) -> None:
    model = saved_model(tmp_path / "model")
    src = _source(tmp_path / "src.db", model, 12)
    summary = run_json(capsys, "gallery", "migrate", src, milvus_uri)
    assert summary["copied_identities"] == 12 and summary["images"] == "none"
    with Gallery.open(milvus_uri) as m, Gallery.open(src) as s:
        q = clustered(5, s.dim, clusters=10, seed=3)
        assert [x.identity for x in s.identify_embeddings(q)] == [x.identity for x in m.identify_embeddings(q)]
    other = tmp_path / "other.db"
    with Gallery.create(other, model):
        pass
    assert cli(["gallery", "migrate", str(src), str(other)]) == 2  # never into an existing gallery
    assert "not a migration of" in capsys.readouterr().err


def test_force_refuses_a_gallery_in_use_and_passwords_are_masked(pg_uri: str, tmp_path: Path, capsys) -> None:
    """``create --force`` does not drop a PostgreSQL gallery another connection has open;
    no CLI output repeats a URI's password (the test server trusts its socket, so any
    password connects)."""
    model = saved_model(tmp_path / "model")
    secret = pg_uri.replace("postgresql://postgres:@", "postgresql://postgres:s3cret@", 1).replace("postgresql://postgres@", "postgresql://postgres:s3cret@", 1)
    assert "s3cret@" in secret
    created = run_json(capsys, "gallery", "create", secret, "--model", model)
    assert "s3cret" not in json.dumps(created) and ":***@" in created["gallery"]
    with Gallery.open(pg_uri) as g:
        g.enroll_embeddings("kept", clustered(1, g.dim, clusters=2))
        assert cli(["gallery", "create", secret, "--model", str(model), "--force"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "another process has this gallery open" in err and "s3cret" not in err
        assert g.identity_names() == ["kept"]  # untouched
    for args in (["gallery", "list", secret], ["gallery", "check", secret], ["gallery", "remove", secret, "kept"]):
        assert cli(args) == 0
        out, err = capsys.readouterr()
        assert "s3cret" not in out + err
    assert cli(["gallery", "create", secret, "--model", str(model), "--force"]) == 0  # nobody has it open now
    assert "s3cret" not in capsys.readouterr().out
