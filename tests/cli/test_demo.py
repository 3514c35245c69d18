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


def test_demo_json_and_duration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    data = tiny_folder(tmp_path / "images")
    code = cli(["demo", "--data", str(data), "--out", str(tmp_path / "demo"), "--steps", "4", "--episodes", "20",
                "--time-budget", "2m", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = json.loads(captured.out)
    assert out["n_way"] == 6 and 0 <= out["accuracy"] <= 1 and out["n_known_queries"] == 15
    assert "Held out for testing" in captured.err
    assert cli(["demo", "--data", str(data), "--out", str(tmp_path / "d2"), "--time-budget", "soon", "--json"]) == 2
    captured = capsys.readouterr()
    assert "--time-budget: 'soon' is not a duration" in captured.err
    assert json.loads(captured.out)["error"] == "invalid_input"


def test_eta_is_capped_by_the_time_budget() -> None:
    from twinshot.training.progress import remaining_seconds

    # 1,500 steps left at 1 step/s would be 25 minutes, but the budget ends in 4
    assert remaining_seconds(1500, 1.0, deadline=1240.0, now=1000.0) == 240.0
    assert remaining_seconds(100, 1.0, deadline=1240.0, now=1000.0) == 100.0
    assert remaining_seconds(100, None, deadline=None, now=0.0) is None
    assert remaining_seconds(100, 2.0, deadline=10.0, now=20.0) == 0.0
