"""``twinshot verify MODEL IMAGE1 IMAGE2``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from twinshot.cli.main import cli
from twinshot.gallery import Gallery, verify_images

from tests.gallery.helpers import saved_model


def test_verify_json_matches_the_library(capsys, tmp_path: Path, image_folder: Path) -> None:
    model = saved_model(tmp_path / "model")
    a, b = sorted(image_folder.rglob("*.png"))[:2]
    assert cli(["verify", str(model), str(a), str(b), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"probability", "same", "score", "threshold"}
    ref = verify_images(model, a, b)
    assert out["score"] == pytest.approx(ref.score) and out["same"] == ref.same
    assert out["probability"] == pytest.approx(torch.sigmoid(torch.tensor(ref.score)).item())  # uncalibrated: the model's own
    assert out["threshold"] == 0.0

    assert cli(["verify", str(model), str(a), str(a), "--threshold", "1e9", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["same"] is False

    assert cli(["verify", str(model), str(a), str(b)]) == 0
    text = capsys.readouterr().out
    assert "P(same)" in text and "at the threshold" in text


def test_verify_with_a_gallerys_calibration(capsys, tmp_path: Path, image_folder: Path) -> None:
    model = saved_model(tmp_path / "model")
    files = sorted(image_folder.rglob("*.png"))
    with Gallery.create(tmp_path / "g.db", model) as g:
        g.calibrate(folder=image_folder, eer=True, n_pairs=200, n_boot=20)
        expected = g.verify(files[0], files[6])
    assert cli(["verify", str(model), str(files[0]), str(files[6]), "--gallery", str(tmp_path / "g.db"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["threshold"] == pytest.approx(expected.threshold) and out["probability"] == pytest.approx(expected.probability)
    assert out["same"] == expected.same


def test_verify_errors(capsys, tmp_path: Path, image_folder: Path) -> None:
    model = saved_model(tmp_path / "model")
    a = sorted(image_folder.rglob("*.png"))[0]
    assert cli(["verify", str(model), str(a), str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert cli(["verify", str(tmp_path / "nomodel"), str(a), str(a)]) == 2
    assert "not found" in capsys.readouterr().err
    np.save(tmp_path / "x.npy", np.zeros(3))
    assert cli(["verify", str(model), str(a), str(tmp_path / "x.npy")]) == 2
    assert "x.npy" in capsys.readouterr().err


def test_a_torchscript_export_given_as_the_model_is_named(capsys, tmp_path: Path, image_folder: Path) -> None:
    model = saved_model(tmp_path / "model")
    a, b = sorted(image_folder.rglob("*.png"))[:2]
    assert cli(["export", str(model), "--format", "torchscript", "--out", str(tmp_path / "encoder.pt"), "--json"]) == 0
    capsys.readouterr()
    assert cli(["verify", str(tmp_path / "encoder.pt"), str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "a TorchScript export" in err and "--format onnx" in err and "not found" not in err
    assert err.count("\n") == 1
    stray = tmp_path / "notes.txt"
    stray.write_text("hello")
    assert cli(["verify", str(stray), str(a), str(b)]) == 2
    assert "a file, not a model" in capsys.readouterr().err
