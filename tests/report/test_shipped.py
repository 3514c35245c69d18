"""The shipped application models load by name, say how they were made, and work on the
real held-out data (a small report on held-out ORL subjects)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinshot.models import load_model, resolve_model_dir, shipped_models
from twinshot.training.config import load_config

HELD_OUT_FACES = ["s5", "s7", "s9", "s13"]  # part of the faces-orl preset's validation subjects


@pytest.mark.parametrize("name, size, invert", [("faces-orl", 32, False), ("signatures", 64, True)])
def test_shipped_model_loads_by_name(name: str, size: int, invert: bool) -> None:
    assert name in shipped_models()
    model = load_model(name)
    assert model.preprocessing.size == (size, size) and model.preprocessing.invert is invert
    meta = json.loads((resolve_model_dir(name) / "model.json").read_text())
    assert "command" in meta["extra"]
    for f in ("config.toml", "epochs.csv", "metrics.csv", "training.png"):
        assert (resolve_model_dir(name) / f).is_file()


def test_faces_model_on_held_out_subjects(datasets_dir: Path, tmp_path: Path) -> None:
    from twinshot.report import build_report

    orl = datasets_dir / "orl_faces"
    if not orl.is_dir():
        pytest.skip(f"ORL faces not found in {datasets_dir}")
    folder = tmp_path / "heldout"
    folder.mkdir()
    for s in HELD_OUT_FACES:
        (folder / s).symlink_to(orl / s)
    r = build_report("faces-orl", tmp_path / "out", folder=folder, episodes=200, map_method="pca", n_boot=100)
    v = r.summary["verification"]
    assert v["n_genuine"] == 4 * 45 and v["n_impostor"] == 6 * 100
    assert v["auc"] > 0.9 and v["eer"] < 0.2
    assert r.summary["episodes"]["accuracy"] > 0.8


def test_signatures_cedar_is_shipped_with_its_preprocessing() -> None:
    model = load_model("signatures-cedar")
    p = model.preprocessing
    assert p.size == (150, 220) and p.invert and p.keep_aspect
    meta = json.loads((resolve_model_dir("signatures-cedar") / "model.json").read_text())
    assert meta["extra"]["preset"] == "signatures-cedar"
    assert meta["extra"]["data"]["val_groups"] == ["3", "9", "17", "22", "23", "25", "31", "34", "37", "45"]
    # runs 42-50: nine test-time views, as the preset now makes them
    views = ["shift:3", "stroke:0.5", "scale:0.05"]
    assert model.encoder.test_views == views and meta["extra"]["test_views"]["views"] == views
    assert load_config(preset="signatures-cedar").model.encoder_params["test_views"] == views


def test_signatures_cedar_separates_skilled_forgeries_of_unseen_writers(datasets_dir: Path) -> None:
    """Two of its validation writers: better than chance on genuine vs skilled forgery pairs
    (the shipped figure on all ten is EER 23.1%, run 33 in docs/applications.md)."""
    from twinshot.data.datasets.cedar import cedar_pairs
    from twinshot.evaluation.verification import pair_scores, verification_metrics

    if not (datasets_dir / "cedar").is_dir():
        pytest.skip("cedar not found")
    pairs = cedar_pairs(datasets_dir / "cedar", "3,9")
    scores, same = pair_scores(load_model("signatures-cedar"), pairs["genuine"] + pairs["skilled"])
    assert verification_metrics(scores, same).eer < 0.4


def test_signatures_cedar_pairs_is_the_fused_pair_scorer_of_split_0() -> None:
    model = load_model("signatures-cedar-pairs")
    assert model.spec.encoder == "pair_input" and model.spec.head == "twochannel_dichotomy"
    p = model.preprocessing
    assert p.size == (150, 220) and p.invert and p.keep_aspect
    meta = json.loads((resolve_model_dir("signatures-cedar-pairs") / "model.json").read_text())
    assert "3 9 17 22 23 25 31 34 37 45" in meta["extra"]["protocol"] and "command" in meta["extra"]
    assert model.head.fusion[1] > 0 and model.head.fusion[3] > 0


def test_signatures_cedar_pairs_separates_skilled_forgeries_of_unseen_writers(datasets_dir: Path) -> None:
    """Writer 3 (held out): better than chance on genuine vs skilled forgery pairs (the
    shipped figure on all ten is EER 22.4%, see docs/applications.md)."""
    from twinshot.data.datasets.cedar import cedar_pairs
    from twinshot.evaluation.verification import pair_scores, verification_metrics

    if not (datasets_dir / "cedar").is_dir():
        pytest.skip("cedar not found")
    pairs = cedar_pairs(datasets_dir / "cedar", "3")
    scores, same = pair_scores(load_model("signatures-cedar-pairs"), pairs["genuine"] + pairs["skilled"])
    assert verification_metrics(scores, same).eer < 0.4
