"""``twinshot gallery verify GALLERY IDENTITY IMAGE --scoring svm``: a claim scored by the
identity's own SVM on real CEDAR signatures in a real gallery that keeps images; its JSON,
a given cohort folder, and one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from twinshot.cli.main import cli
from twinshot.models import ModelSpec, build_model
from twinshot.models.io import save_model
from twinshot.preprocessing import Preprocessing


def _saved_signet(directory: Path) -> Path:
    torch.manual_seed(0)
    pre = Preprocessing(size=(30, 44), invert=True, keep_aspect=True)
    params = {"input_width": 44, "widths": [4, 8, 8], "grid": [1, 2], "hidden": 6, "embedding_dim": 5}
    save_model(build_model(ModelSpec("signet", params, "euclidean", {}, pre)), directory)
    return directory


@pytest.fixture
def bank(tmp_path: Path, datasets_dir: Path) -> tuple[Path, Path, Path]:
    cedar = datasets_dir / "cedar"
    if not cedar.is_dir():
        pytest.skip("cedar not found")
    org = cedar / "full_org"
    model = str(_saved_signet(tmp_path / "m"))
    db = tmp_path / "bank.db"
    torch_ = ["--inference", "torch"]
    assert cli(["gallery", "create", str(db), "--model", model, "--keep-images", *torch_]) == 0
    for w in (1, 2):
        assert cli(["gallery", "enroll", str(db), str(w), *(str(org / f"original_{w}_{n}.png") for n in (1, 2, 3)), *torch_]) == 0
    plain = tmp_path / "plain.db"
    assert cli(["gallery", "create", str(plain), "--model", model, *torch_]) == 0
    assert cli(["gallery", "enroll", str(plain), "1", str(org / "original_1_1.png"), *torch_]) == 0
    return db, plain, cedar


def test_verify_a_claim_with_the_svm(bank: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, _, cedar = bank
    questioned = str(cedar / "full_org" / "original_1_12.png")
    capsys.readouterr()
    assert cli(["gallery", "verify", str(db), "1", questioned, "--scoring", "svm", "--inference", "torch", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scoring"] == "svm" and out["rule"] == "svm" and out["references"] == 3 and out["cohort"] == 3
    assert out["same"] == (out["score"] >= out["threshold"]) and out["threshold"] == 0.0 and out["probability"] is None
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    for n in (1, 2, 3, 4):
        shutil.copy(cedar / "full_org" / f"original_5_{n}.png", cohort)
    forged = str(cedar / "full_forg" / "forgeries_1_1.png")
    args = ["gallery", "verify", str(db), "1", forged, "--scoring", "svm", "--cohort", str(cohort), "--threshold", "-0.5"]
    assert cli([*args, "--inference", "torch"]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"{forged}: ") and "as 1 (svm score" in line and "vs threshold -0.500" in line
    assert "3 references vs a cohort of 4" in line


def test_svm_errors_are_one_line(bank: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, plain, cedar = bank
    questioned = str(cedar / "full_org" / "original_1_12.png")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((60, 90), 255, np.uint8)).save(blank)
    for argv, expected in (
        ([str(db), "1", str(blank), "--scoring", "svm"], str(blank)),
        ([str(plain), "1", questioned, "--scoring", "svm"], "keep_images"),
        ([str(db), "1", questioned, "--scoring", "best"], "unknown scoring 'best'"),
        ([str(db), "1", questioned, "--cohort", str(tmp_path)], "only used by scoring 'svm'"),
        ([str(db), "1", questioned, "--scoring", "svm", "--cohort", str(tmp_path / "none")], "must be a folder"),
        ([str(db), "9", questioned, "--scoring", "svm"], "identity '9' is not enrolled"),
    ):
        capsys.readouterr()
        assert cli(["gallery", "verify", *argv, "--inference", "torch"]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err and err.count("\n") == 1, err


def test_verify_a_claim_fused(bank: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.writer_dependent.test_fusion import saved_fusion_models

    db, _, cedar = bank
    questioned = str(cedar / "full_org" / "original_1_12.png")
    capsys.readouterr()
    assert cli(["gallery", "verify", str(db), "1", questioned, "--scoring", "fused", "--inference", "torch"]) == 2
    assert "stores no claims fusion" in capsys.readouterr().err  # this gallery's model has none
    signet, _, _ = saved_fusion_models(tmp_path / "fusion")
    fused = tmp_path / "fused.db"
    torch_ = ["--inference", "torch"]
    assert cli(["gallery", "create", str(fused), "--model", str(signet), "--keep-images", *torch_]) == 0
    for w in (1, 2):
        assert cli(["gallery", "enroll", str(fused), str(w), *(str(cedar / "full_org" / f"original_{w}_{n}.png") for n in (1, 2)), *torch_]) == 0
    capsys.readouterr()
    assert cli(["gallery", "verify", str(fused), "1", questioned, "--scoring", "fused", *torch_, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scoring"] == out["rule"] == "fused" and out["threshold"] == 0.1 and out["references"] == 2
    assert out["same"] == (out["score"] >= 0.1)
    assert cli(["gallery", "verify", str(fused), "1", questioned, "--scoring", "fused", *torch_]) == 0
    assert "fused score" in capsys.readouterr().out

