"""``twinshot export MODEL --format onnx|torchscript --out FILE``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinshot.export import read_sidecar
from twinshot.models import fingerprint, load_model, save_model

from tests.export.helpers import tiny_model


def run(args: list[str]) -> int:
    """``twinshot export ARGS``: through ``twinshot.cli.main.cli`` once the command is
    wired there, else through a one-command app with the same error handling."""
    from twinshot.cli import main

    if any(c.name == "export" for c in main.app.registered_commands):
        return main.cli(["export", *args])
    import typer

    from twinshot.cli.export import export

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("export")(export)
    app.command("_unused", hidden=True)(lambda: None)  # keep "export" a sub-command
    original, main.app = main.app, app
    try:
        return main.cli(["export", *args])
    finally:
        main.app = original


def test_export_onnx_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    save_model(tiny_model("cosine"), tmp_path / "model")
    out = tmp_path / "encoder.onnx"
    assert run([str(tmp_path / "model"), "--format", "onnx", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["path"] == str(out) and result["format"] == "onnx" and result["max_abs_diff"] <= 1e-4
    assert result["fingerprint"] == fingerprint(load_model(tmp_path / "model")) == read_sidecar(out)["fingerprint"]
    assert result["sidecar"] == str(out) + ".json" and out.is_file()


def test_export_torchscript_prints_the_parity(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    save_model(tiny_model(), tmp_path / "model")
    assert run([str(tmp_path / "model"), "--format", "torchscript", "--out", str(tmp_path / "e.pt")]) == 0
    text = capsys.readouterr().out
    assert "parity: max |difference| of embeddings 0.00e+00 <= 0.0001 (batches of 1 and 8)" in text
    assert str(tmp_path / "e.pt.json") in text


def test_export_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    save_model(tiny_model(), tmp_path / "model")
    assert run([str(tmp_path / "model"), "--format", "tflite", "--out", str(tmp_path / "e")]) == 2
    assert "unknown export format 'tflite'; valid: onnx, torchscript" in capsys.readouterr().err
    assert run([str(tmp_path / "nope"), "--format", "onnx", "--out", str(tmp_path / "e")]) == 2
    assert "not found" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
