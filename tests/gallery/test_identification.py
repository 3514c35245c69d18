"""Identification thresholds for a gallery of M people (``calibrate --fpir``): hand-checked
estimates, the stored record and its size warning, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.gallery.helpers import saved_model
from twinshot.cli.main import cli
from twinshot.errors import ConfigError, DataError
from twinshot.gallery import Gallery
from twinshot.gallery.identification import (
    IdentificationCalibration,
    calibrate_gallery,
    calibrate_identification,
    calibration_target,
    gallery_size_warning,
    size_warning,
)


def neg_l1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return -np.abs(a[:, None, :] - b[None, :, :]).sum(2)


def test_extrapolated_hand_checked() -> None:
    # three classes at 0, 1 and 3, two identical images each: the reference drawn does not matter.
    # queries' impostor scores: at 0 -> {-1, -3}; at 1 -> {-1, -2}; at 3 -> {-2, -3}; genuine 0.
    e = np.array([[0.0], [0.0], [1.0], [1.0], [3.0], [3.0]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2])
    # M = 2: FPIR(t) = mean_q 1 - F_q(t)^2; at t = -1: F = (1/2, 1/2, 1) -> (3/4 + 3/4 + 0) / 3 = 1/2
    r = calibrate_identification(e, labels, neg_l1, fpir=0.5, gallery_size=2, simulations=1)
    assert r.method == "extrapolated" and r.threshold == -1.0
    assert r.fpir == pytest.approx(0.5) and r.dir == 1.0 and r.rank1 == 1.0
    # at t = -2: F = (1/2, 0, 1/2) -> FPIR 5/6 > 0.5, so -1 is the lowest threshold that meets the target;
    # below 1/2 no threshold at an impostor score will do: just above the highest one, FPIR 0
    strict = calibrate_identification(e, labels, neg_l1, fpir=0.4, gallery_size=2, simulations=1)
    assert -1.0 < strict.threshold < -1.0 + 1e-9 and strict.fpir == 0.0


def test_simulated_separable() -> None:
    labels = np.repeat(np.arange(8), 3)
    e = (labels[:, None] * 10.0 + np.tile([0.0, 0.5, 1.0], 8)[:, None]).astype(np.float32)
    r = calibrate_identification(e, labels, neg_l1, fpir=0.1, gallery_size=3, simulations=5, seed=1)
    assert r.method == "simulated" and r.gallery_size == 3 and r.simulations == 5
    # classes 10 apart, images at most 1 apart: at FPIR 0.1 every enrolled query is still identified
    assert r.rank1 == 1.0 and r.dir == 1.0 and r.fpir <= 0.1 and -10.0 < r.threshold <= -1.0
    assert r.fpir_range[0] <= r.fpir <= r.fpir_range[1]
    again = calibrate_identification(e, labels, neg_l1, fpir=0.1, gallery_size=3, simulations=5, seed=1)
    assert again == r
    big = calibrate_identification(e, labels, neg_l1, fpir=0.1, gallery_size=50, simulations=2)
    assert big.method == "extrapolated"
    assert IdentificationCalibration.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_errors() -> None:
    labels = np.repeat(np.arange(4), 2)
    e = np.arange(8, dtype=np.float32)[:, None]
    with pytest.raises(ConfigError, match="--fpir"):
        calibrate_identification(e, labels, neg_l1, fpir=1.0, gallery_size=2)
    with pytest.raises(DataError, match="at least 2 classes"):
        calibrate_identification(e, labels, neg_l1, fpir=0.1, gallery_size=2, references=2)
    with pytest.raises(DataError, match="cannot simulate"):
        calibrate_identification(e, labels, neg_l1, fpir=0.1, gallery_size=4, method="simulate")
    with pytest.raises(ConfigError, match="method"):
        calibrate_identification(e, labels, neg_l1, fpir=0.1, gallery_size=2, method="guess")


def test_size_warning() -> None:
    c = IdentificationCalibration(
        threshold=1.0, target_fpir=0.1, gallery_size=10, references=1, method="simulated", simulations=1,
        fpir=0.1, fpir_range=(0.1, 0.1), dir=0.5, dir_range=(0.5, 0.5), rank1=0.9, n_classes=20, n_images=40,
    )
    assert size_warning(15, c) is None and size_warning(100, None) is None
    message = size_warning(16, c)
    assert message is not None and message.startswith("warning:") and "10 identities" in message and "16" in message


def test_calibrate_gallery_stores_and_warns(tmp_path: Path, image_folder: Path) -> None:
    model = saved_model(tmp_path / "model")
    path = tmp_path / "g.db"
    files = sorted(image_folder.rglob("*.png"))
    with Gallery.create(path, model) as g:
        g.enroll("a", [files[0]])
        g.enroll("b", [files[5]])
        assert calibration_target(g) is None
        r = calibrate_gallery(g, image_folder, fpir=0.2, simulations=3)
        assert r.gallery_size == 2 and r.references == 1 and g.threshold == r.threshold
        assert calibration_target(g) == "fpir=0.2 at M=2"
        assert gallery_size_warning(path) is None
        for i in range(2):
            g.enroll(f"x{i}", [files[10 + 5 * i]])
    warning = gallery_size_warning(path)
    assert warning is not None and "2 identities" in warning and "4" in warning
    with Gallery.open(path) as g:  # a pair calibration replaces the FPIR record
        g.calibrate(folder=image_folder, far=0.1, n_pairs=100, n_boot=10)
        assert calibration_target(g) == "far=0.1"
    assert gallery_size_warning(path) is None


def test_cli_calibrate_fpir(capsys, tmp_path: Path, image_folder: Path) -> None:
    model = saved_model(tmp_path / "model")
    g = tmp_path / "g.db"
    files = sorted(image_folder.rglob("*.png"))
    assert cli(["gallery", "create", str(g), "--model", str(model)]) == 0
    assert cli(["gallery", "enroll", str(g), "a", str(files[0])]) == 0
    capsys.readouterr()
    assert cli(["gallery", "calibrate", str(g), "--folder", str(image_folder), "--fpir", "0.1", "--gallery-size", "3",
                "--simulations", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["gallery_size"] == 3 and out["target_fpir"] == 0.1 and out["method"] == "simulated"
    assert cli(["gallery", "list", str(g)]) == 0
    assert "fpir=0.1 at M=3" in capsys.readouterr().out
    assert cli(["gallery", "calibrate", str(g), "--folder", str(image_folder), "--fpir", "0.1"]) == 0
    assert "for a gallery of 1 identities" in capsys.readouterr().out
    for i in range(2):  # 3 identities now: 3x the size calibrated for
        assert cli(["gallery", "enroll", str(g), f"x{i}", str(files[10 + 5 * i])]) == 0
    err = capsys.readouterr().err
    assert "warning: the threshold was calibrated for 1 identities" in err
    assert cli(["gallery", "identify", str(g), str(files[1])]) == 0
    assert "warning:" in capsys.readouterr().err
    for args, message in (
        (["--fpir", "0.1", "--far", "0.1", "--folder", str(image_folder)], "give only one of --fpir"),
        (["--fpir", "0.1"], "needs --folder"),
        (["--fpir", "2", "--folder", str(image_folder)], "--fpir must be in"),
    ):
        assert cli(["gallery", "calibrate", str(g), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err
