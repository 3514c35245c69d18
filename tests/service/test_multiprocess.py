"""Two processes on one live gallery: ``twinshot serve`` and CLI readers. A reader must
never make the server lose a confirmed write (issue 11, defect 1: the file was opened and
closed outside SQLite, which on POSIX drops the process's locks, so another process
believed it was alone and removed the write-ahead log)."""

from __future__ import annotations

from pathlib import Path

from tests.service.conftest import glyph, new_gallery, new_keys, png
from tests.service.procs import cli, serve


def test_cli_reader_does_not_lose_the_servers_writes(tmp_path: Path, model_dir: Path) -> None:
    gallery = new_gallery(tmp_path / "g.db", model_dir)
    keys, admin, _ = new_keys(tmp_path / "keys.json")
    server = serve(gallery, keys, admin)
    try:
        c = server.client
        assert c.post("/v1/identities/alpha/images", files={"images": ("a.png", png(glyph(0)))}).status_code == 200
        assert c.get("/v1/identities").status_code == 200
        listed = cli("gallery", "list", gallery, "--json")
        assert listed.returncode == 0, listed.stderr
        assert '"alpha"' in listed.stdout
        assert Path(f"{gallery}-wal").exists(), "a reader removed the live write-ahead log"
        assert c.post("/v1/identities/beta/images", files={"images": ("b.png", png(glyph(1)))}).status_code == 200
        r = c.delete("/v1/identities/alpha")
        assert r.status_code == 200, r.text
        r = c.get("/v1/identities")
        assert r.status_code == 200 and [i["name"] for i in r.json()["identities"]] == ["beta"]
        assert cli("gallery", "list", gallery).returncode == 0
    finally:
        server.stop()
    server = serve(gallery, keys, admin)  # after a restart: what was confirmed is there
    try:
        r = server.client.get("/v1/identities")
        assert r.status_code == 200 and [i["name"] for i in r.json()["identities"]] == ["beta"]
    finally:
        server.stop()
    checked = cli("gallery", "list", gallery, "--json")
    assert checked.returncode == 0 and '"beta"' in checked.stdout and '"alpha"' not in checked.stdout


def test_serve_read_only_says_so_and_answers_503(tmp_path: Path, model_dir: Path) -> None:
    gallery = new_gallery(tmp_path / "g.db", model_dir)
    keys, admin, _ = new_keys(tmp_path / "keys.json")
    server = serve(gallery, keys, admin, "--read-only")
    try:
        r = server.client.post("/v1/identities/alpha/images", files={"images": ("a.png", png(glyph(0)))})
        assert r.status_code == 503 and r.json()["error"] == "read_only_gallery", r.text
        assert server.client.get("/v1/identities").status_code == 200
    finally:
        server.stop()
    err = server.proc.stderr.read()  # type: ignore[union-attr]
    assert "is read-only here" in err and "will answer 503" in err, err
    assert "Traceback" not in err
