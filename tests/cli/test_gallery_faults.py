"""Issue 11 through the command line: every bad input or damaged gallery is one ``error:``
line with exit status 2 (never a traceback, never a changed file), ``gallery check``, and
the real entry point's command list."""

from __future__ import annotations

import json
import os
import sqlite3
import unicodedata
from pathlib import Path

import pytest

from twinshot.cli.main import app, cli

from tests.gallery.helpers import saved_model


def run(capsys, *args) -> tuple[int, str, str]:
    code = cli([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def fails(capsys, *args, match: str) -> str:
    code, out, err = run(capsys, *args)
    assert code == 2, (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert match in err, err
    return err


@pytest.fixture
def setup(capsys, tmp_path: Path, image_folder: Path):
    model = saved_model(tmp_path / "model")
    gallery = tmp_path / "g.db"
    assert cli(["gallery", "create", str(gallery), "--model", str(model)]) == 0
    files = sorted(image_folder.rglob("*.png"))
    assert cli(["gallery", "enroll", str(gallery), "alice", str(files[0])]) == 0
    capsys.readouterr()
    return gallery, model, files


def test_every_command_is_registered_on_the_real_entry_point() -> None:
    import typer

    command = typer.main.get_command(app)
    assert {"demo", "train", "evaluate", "gallery", "verify", "export", "report", "serve", "keys", "models"} <= set(command.commands)
    gallery = command.commands["gallery"]
    assert {"create", "enroll", "enroll-folder", "identify", "search", "remove", "list", "calibrate", "reembed", "build-index", "check"} <= set(gallery.commands)  # type: ignore[attr-defined]
    assert {"add", "list", "remove"} <= set(command.commands["keys"].commands)  # type: ignore[attr-defined]


def test_list_on_a_zero_byte_file_never_writes_it(capsys, tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    for command in ("list", "check"):
        fails(capsys, "gallery", command, empty, match="not a twinshot gallery")
    assert empty.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def test_numbers_are_checked(capsys, setup, tmp_path: Path) -> None:
    gallery, model, files = setup
    out = json.loads(run(capsys, "gallery", "search", gallery, files[0], "--k", "99999999999999999999", "--json")[1])
    assert len(out["results"][0]["neighbours"]) == 1  # clamped to the gallery's size
    assert len(json.loads(run(capsys, "gallery", "identify", gallery, files[0], "--k", "1000000000", "--json")[1])[0]["candidates"]) == 1
    fails(capsys, "gallery", "search", gallery, files[0], "--k", "0", match="k must be >= 1")
    fails(capsys, "gallery", "identify", gallery, files[0], "--threshold", "nan", match="finite")
    fails(capsys, "gallery", "create", tmp_path / "nan.db", "--model", model, "--threshold", "nan", match="finite")
    assert not (tmp_path / "nan.db").exists()
    fails(capsys, "gallery", "calibrate", gallery, "--folder", files[0].parent.parent, "--eer", "--n-pairs", "-5", match="n_pairs")
    fails(capsys, "gallery", "calibrate", gallery, "--folder", files[0].parent.parent, "--eer", "--seed", "-1", match="seed")


def test_names_follow_the_services_rule(capsys, setup) -> None:
    gallery, _, files = setup
    fails(capsys, "gallery", "enroll", gallery, "two\nlines", files[1], match="control character")
    fails(capsys, "gallery", "enroll", gallery, "esc\x1b[2J", files[1], match="control character")
    fails(capsys, "gallery", "enroll", gallery, "x" * 100_000, files[1], match="limit is 128")
    assert run(capsys, "gallery", "enroll", gallery, unicodedata.normalize("NFC", "é"), files[1])[0] == 0
    fails(capsys, "gallery", "enroll", gallery, unicodedata.normalize("NFD", "é"), files[2], match="already enrolled")
    deep = "{" + '"a":{' * 300 + "}" * 301
    fails(capsys, "gallery", "enroll", gallery, "deep", files[1], "--metadata", deep, match="--metadata is nested")
    names = [r["name"] for r in json.loads(run(capsys, "gallery", "list", gallery, "--json")[1])["identities"]]
    assert names == ["alice", "é"]


def test_misleading_messages_are_fixed(capsys, setup, tmp_path: Path) -> None:
    gallery, model, files = setup
    fails(capsys, "gallery", "identify", gallery, tmp_path, match="is a folder")
    fails(capsys, "gallery", "create", "/proc/twinshot-test/g.db", "--model", model, match="cannot create")
    binary = tmp_path / "pairs.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    fails(capsys, "gallery", "calibrate", gallery, "--pairs", binary, "--eer", match="pairs.csv")
    fails(capsys, "evaluate", "verification", model, "--pairs", binary, match="pairs.csv")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files anyway")
def test_write_commands_on_a_read_only_gallery(capsys, setup) -> None:
    gallery, _, files = setup
    gallery.chmod(0o444)
    try:
        fails(capsys, "gallery", "enroll", gallery, "bob", files[1], match="read-only")
        fails(capsys, "gallery", "remove", gallery, "alice", match="read-only")
        assert run(capsys, "gallery", "list", gallery)[0] == 0
    finally:
        gallery.chmod(0o644)


def test_export_opset_and_unwritable_places(capsys, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    model = saved_model(tmp_path / "model")
    for opset in ("1", "999"):
        fails(capsys, "export", model, "--format", "onnx", "--out", tmp_path / f"m{opset}.onnx", "--opset", opset, match="opset")
        assert not (tmp_path / f"m{opset}.onnx").exists() and not (tmp_path / f"m{opset}.onnx.json").exists()
    fails(capsys, "export", model, "--format", "onnx", "--out", "/proc/twinshot-test/m.onnx", match="/proc/twinshot-test")


def test_gallery_check(capsys, setup) -> None:
    gallery, _, _ = setup
    code, out, _ = run(capsys, "gallery", "check", gallery)
    assert code == 0 and ": ok;" in out and "1 identities" in out
    report = json.loads(run(capsys, "gallery", "check", gallery, "--json")[1])
    assert report["ok"] is True and report["embeddings"] == 1 and report["audit_records"] == 1
    with sqlite3.connect(gallery) as db:
        db.execute("UPDATE blocks SET vectors = substr(vectors, 1, 7)")
        db.execute("UPDATE meta SET value = '{' WHERE key = 'calibration'")
    code, out, _ = run(capsys, "gallery", "check", gallery, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and len(report["problems"]) == 2
    code, out, _ = run(capsys, "gallery", "check", gallery)
    assert code == 1 and out.count("problem:") == 2
    fails(capsys, "gallery", "list", gallery, match="gallery check")
    fails(capsys, "gallery", "check", gallery.with_name("none.db"), match="no such gallery")
