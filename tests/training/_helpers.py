"""A tiny synthetic training setup shared by the training and CLI tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import make_image_folder
from twinshot.training import TrainConfig, load_config

#: 3 groups x 6 classes x 6 images of 16x16 synthetic glyphs; one group is held out.
TINY = {
    "data.val": 1,
    "data.split_by": "group",
    "model.encoder_params": {"widths": [8, 8], "embedding_dim": 16, "dropout": 0.2},
    "model.preprocessing.size": [16, 16],
    "sampler.n_way": 4,
    "sampler.n_shot": 1,
    "sampler.n_query": 2,
    "augmentation.name": "koch_affine",
    "optimizer.lr": 0.01,
    "run.epochs": 2,
    "run.steps_per_epoch": 3,
    "run.threads": 1,
    "run.log_every": 1,
    "validation.n_way": 4,
    "validation.episodes": 10,
    "validation.calibration_pairs": 60,
}


def tiny_folder(root: Path) -> Path:
    if not (root / "alphabet0").is_dir():
        make_image_folder(root, groups=3, classes_per_group=6, per_class=6, size=16)
    return root


def tiny_config(folder: Path, **overrides: Any) -> TrainConfig:
    return load_config(overrides={"data.sources": [str(folder)], **TINY, **overrides})
