from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training._helpers import TINY, tiny_folder
from twinshot.cli.main import cli
from twinshot.models import load_model


def _sets() -> list[str]:
    from twinshot.training.toml import _value

    args = []
    for key, value in TINY.items():
        if key.startswith("run.epochs"):
            continue
        args += ["--set", f"{key}={_value(value)}"]
    return args


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_folder(tmp_path_factory.mktemp("cli") / "images")


def test_train_prints_run_and_accuracy(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = cli(["train", "--data", str(folder), "--out", str(out), "--epochs", "1", "--quiet", *_sets()])
    text = capsys.readouterr().out
    assert code == 0, text
    assert f"run: {out}" in text and "best validation accuracy:" in text and "images/s" in text
    assert load_model(out).spec.encoder_params["widths"] == [8, 8]
    assert "command" in json.loads((out / "best" / "model.json").read_text())["extra"]


def test_train_json_and_resume(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert cli(["train", "--data", str(folder), "--out", str(out), "--epochs", "1", "--json", *_sets()]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["steps"] == 3 and first["stopped"] == "completed" and 0 <= first["best_accuracy"] <= 1
    # more epochs for a finished run: resume continues it
    assert cli(["train", "--resume", str(out), "--epochs", "2", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["steps"] == 6 and second["epochs"] == 2


def test_train_init_from_a_run(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = tmp_path / "first"
    assert cli(["train", "--data", str(folder), "--out", str(first), "--epochs", "1", "--quiet", *_sets()]) == 0
    for flag in (["--init-from", str(first)], ["--set", f"run.init_from='{first}'"]):
        out = tmp_path / f"ft{len(flag[0])}"
        assert cli(["train", "--data", str(folder), "--out", str(out), "--epochs", "1", "--quiet", *_sets(), *flag]) == 0
        extra = json.loads((out / "best" / "model.json").read_text())["extra"]
        assert extra["init_from"]["path"] == str(first / "best") and len(extra["init_from"]["sha256"]) == 64
    capsys.readouterr()
    code = cli(["train", "--data", str(folder), "--out", str(tmp_path / "bad"), "--quiet", *_sets(), "--init-from", "nope"])
    err = capsys.readouterr().err
    assert code != 0 and "run.init_from: model 'nope' not found" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--set", "run.epoch=2"], "unknown config key 'run.epoch'"),
        (["--set", "optimizer.name=rmsprop"], "unknown optimizer.name 'rmsprop'; valid: adam, adamw, sgd"),
        (["--loss", "hinge"], "unknown loss 'hinge'; valid:"),
        (["--preset", "imagenet"], "unknown preset 'imagenet'"),
    ],
)
def test_errors_are_one_line(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    code = cli(["train", "--data", str(folder), "--out", str(tmp_path / "run"), "--quiet", *_sets(), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_data_and_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["train", "--data", str(tmp_path / "nowhere.zip"), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "dataset not found" in capsys.readouterr().err
    assert cli(["train", "--quiet"]) == 2
    assert "--out RUN_DIR is required" in capsys.readouterr().err
