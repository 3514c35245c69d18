"""``twinshot gallery verify GALLERY IDENTITY IMAGE``: the claimed-identity check from the
command line, its JSON, and clear one-line errors (unknown identity, blank page)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from twinshot.cli.main import cli

from tests.gallery.helpers import random_images, saved_model


@pytest.fixture
def bank(tmp_path: Path) -> tuple[Path, list[Path]]:
    paths = []
    for i, arr in enumerate(random_images(3)):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(arr).save(paths[-1])
    db = tmp_path / "bank.db"
    assert cli(["gallery", "create", str(db), "--model", str(saved_model(tmp_path / "m")), "--inference", "torch"]) == 0
    assert cli(["gallery", "enroll", str(db), "alice", str(paths[0]), str(paths[1]), "--inference", "torch"]) == 0
    return db, paths


def test_verify_a_claim(bank: tuple[Path, list[Path]], capsys: pytest.CaptureFixture[str]) -> None:
    db, paths = bank
    capsys.readouterr()
    assert cli(["gallery", "verify", str(db), "alice", str(paths[1]), "--inference", "torch", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["identity"] == "alice" and out["references"] == 2 and out["rule"] == "max"
    assert out["same"] == (out["score"] >= out["threshold"]) and out["image"] == str(paths[1])
    assert cli(["gallery", "verify", str(db), "alice", str(paths[2]), "--inference", "torch"]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"{paths[2]}: ") and "as alice" in line and "over 2 references" in line


def test_unknown_identity_is_one_line(bank: tuple[Path, list[Path]], capsys: pytest.CaptureFixture[str]) -> None:
    db, paths = bank
    capsys.readouterr()
    assert cli(["gallery", "verify", str(db), "mallory", str(paths[0]), "--inference", "torch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: identity 'mallory' is not enrolled") and err.count("\n") == 1


def test_blank_page_is_refused(bank: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A blank page (no ink) is refused by the decoder, naming the file, before any score."""
    db, _ = bank
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((60, 90), 255, np.uint8)).save(blank)
    capsys.readouterr()
    rc = cli(["gallery", "verify", str(db), "alice", str(blank), "--inference", "torch"])
    captured = capsys.readouterr()
    assert rc == 2 and captured.err.startswith("error: ") and str(blank) in captured.err
    assert "Traceback" not in captured.err and captured.out == ""
