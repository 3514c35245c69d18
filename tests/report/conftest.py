"""A tiny untrained model and a synthetic labelled folder, shared by the report tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import make_image_folder


def make_tiny_model(directory: Path) -> Path:
    """Save a small compact-encoder model (16x16 grey input, 16-d) to ``directory``."""
    from twinshot.data.images import Preprocessing
    from twinshot.models import ModelSpec, build_model, save_model

    torch.manual_seed(0)
    spec = ModelSpec("compact", {"widths": [8, 16], "pool": "avg", "embedding_dim": 16}, "euclidean", {},
                     Preprocessing(size=(16, 16), channels=1, invert=True))
    return save_model(build_model(spec), directory)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 classes x 5 images of 32x32 synthetic glyphs, ``root/classNN/*.png``."""
    return make_image_folder(tmp_path_factory.mktemp("data") / "folder", groups=1, classes_per_group=6, per_class=5, nested=False)


@pytest.fixture(scope="module")
def folder_report(tiny_model: Path, synthetic_folder: Path, tmp_path_factory: pytest.TempPathFactory):
    from twinshot.report import build_report

    return build_report(tiny_model, tmp_path_factory.mktemp("report") / "out", folder=synthetic_folder,
                        far=0.05, episodes=50, n_boot=200, worst=3)
