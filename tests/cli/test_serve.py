"""``twinshot serve`` and ``twinshot keys``: keys made and listed from the command line, the
service started as a real process, and its start-up errors as one line and exit 2."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import glyph, model_dir, new_gallery, png  # noqa: F401 (model_dir: a fixture)


def wired() -> bool:
    """Whether cli/main.py has ``serve`` and ``keys`` (else the tests use serve.py's own app)."""
    from twinshot.cli import main

    names = {c.name for c in main.app.registered_commands} | {g.name for g in main.app.registered_groups}
    return {"serve", "keys"} <= names


def invoke(capsys, *args: str) -> tuple[int, str, str]:
    if wired():
        from twinshot.cli.main import cli

        code = cli([str(a) for a in args])
    else:
        import typer

        from twinshot.cli.serve import _standalone
        from twinshot.errors import TwinshotError

        try:
            typer.main.get_command(_standalone()).main(args=[str(a) for a in args], prog_name="twinshot", standalone_mode=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        except TwinshotError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 2
    out, err = capsys.readouterr()
    return code, out, err


def entry() -> list[str]:
    return [sys.executable, "-m", "twinshot.cli.main" if wired() else "twinshot.cli.serve"]


def test_keys_add_list_remove(capsys, tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    code, out, err = invoke(capsys, "keys", "add", keys, "boss", "--role", "admin")
    assert code == 0 and re.fullmatch(r"tsk_[\w-]{43}\n", out) and "shown only once" in err
    secret = out.strip()
    code, out, _ = invoke(capsys, "keys", "add", keys, "door-1", "--json")
    made = json.loads(out)
    assert code == 0 and made["role"] == "read" and made["key"].startswith("tsk_")
    assert secret not in keys.read_text() and made["key"] not in keys.read_text()
    code, out, _ = invoke(capsys, "keys", "list", keys, "--json")
    assert [(k["name"], k["role"]) for k in json.loads(out)["keys"]] == [("boss", "admin"), ("door-1", "read")]
    assert invoke(capsys, "keys", "remove", keys, "door-1", "--json")[0] == 0
    code, _, err = invoke(capsys, "keys", "add", keys, "boss")
    assert code == 2 and "exists" in err
    code, _, err = invoke(capsys, "keys", "add", keys, "x", "--role", "root")
    assert code == 2 and "valid: read, admin" in err and "Traceback" not in err


def test_serve_start_up_errors(capsys, tmp_path: Path, model_dir: Path, monkeypatch) -> None:
    monkeypatch.delenv("TWINSHOT_ADMIN_KEY", raising=False)
    monkeypatch.delenv("TWINSHOT_READ_KEY", raising=False)
    gallery = new_gallery(tmp_path / "door.db", model_dir)
    code, _, err = invoke(capsys, "serve", gallery)
    assert code == 2 and "no API keys" in err and err.count("\n") == 1
    code, _, err = invoke(capsys, "serve", tmp_path / "missing.db", "--keys", tmp_path / "nokeys.json")
    assert code == 2 and "no such keys file" in err
    invoke(capsys, "keys", "add", tmp_path / "keys.json", "boss", "--role", "admin")
    code, _, err = invoke(capsys, "serve", tmp_path / "missing.db", "--keys", tmp_path / "keys.json")
    assert code == 2 and "no such gallery" in err
    with socket.socket() as busy:  # keys from the environment are taken; the port is not free
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("TWINSHOT_ADMIN_KEY", "a-long-enough-admin-secret")
        code, _, err = invoke(capsys, "serve", gallery, "--port", busy.getsockname()[1])
    assert code == 2 and "cannot listen on 127.0.0.1" in err
    code, _, err = invoke(capsys, "serve", tmp_path / "missing.db", "--port", "99999")
    assert code == 2 and "port must be" in err and "gallery" not in err, err  # refused before the gallery is opened


def test_serve_runs_as_a_process(tmp_path: Path, model_dir: Path) -> None:
    gallery = new_gallery(tmp_path / "door.db", model_dir)
    env = {**os.environ, "TWINSHOT_ADMIN_KEY": "admin-secret-for-the-test", "TWINSHOT_READ_KEY": "read-secret-for-the-test"}
    command = entry() + ["serve", str(gallery), "--port", "0", "--log-level", "warning", "--torch-threads", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = match.group(1)
        with httpx.Client(base_url=url, timeout=20) as c:
            assert c.get("/healthz").json() == {"status": "ok"}
            admin = {"Authorization": "Bearer admin-secret-for-the-test"}
            r = c.post("/v1/identities/alice/images", files=[("images", ("a.png", png(glyph(0))))], headers=admin)
            assert r.status_code == 200, r.text
            found = c.post("/v1/identify", files={"image": ("q.png", png(glyph(0)))}, headers={"X-API-Key": "read-secret-for-the-test"})
            assert found.json()["identity"] == "alice"
        audit = json.loads(Path(f"{gallery}.audit.log").read_text().splitlines()[0])
        assert audit["who"] == "env:admin" and audit["action"] == "enroll"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("the service did not stop on SIGTERM")
    assert "Traceback" not in proc.stderr.read()
