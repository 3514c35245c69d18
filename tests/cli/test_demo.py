from __future__ import annotations

from pathlib import Path

import pytest

from tests.training._helpers import tiny_folder
from twinshot.cli.main import cli


def test_demo_at_tiny_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tiny_folder(tmp_path / "images")
    out = tmp_path / "demo"
    code = cli(["demo", "--data", str(data), "--out", str(out), "--steps", "4", "--episodes", "50", "--quiet"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "Held out for testing" in text
    assert "6-way one-shot accuracy on the held-out alphabets" in text
    assert "enrolling ONE drawing of each of 5" in text
    assert "new drawings of enrolled characters" in text and "not enrolled" in text
    assert (out / "model" / "best" / "model.safetensors").is_file()
    assert (out / "gallery.sqlite").is_file()


def test_demo_without_data_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli(["demo", "--data", str(tmp_path / "missing.zip"), "--out", str(tmp_path / "demo"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Omniglot background set not found" in err and err.count("\n") == 1
