"""twinshot: Siamese networks and one-shot learning.

Train a Siamese encoder on pairs, triplets or episodes, evaluate it with the field's
standard protocols, calibrate a threshold, enroll one reference per class and recognise.

The main entry points are importable from here (``from twinshot import Gallery,
load_model, train``); each is imported on first use, so ``import twinshot`` (and
``twinshot --help``) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    # gallery: enroll, identify, verify, search, calibrate
    "Gallery": "twinshot.gallery",
    "verify_images": "twinshot.gallery",
    "evaluate_open_set": "twinshot.gallery",
    "Calibration": "twinshot.gallery",
    # models
    "load_model": "twinshot.models",
    "build_model": "twinshot.models",
    "ModelSpec": "twinshot.models",
    "SiameseNetwork": "twinshot.models",
    "shipped_models": "twinshot.models",
    # training
    "train": "twinshot.training",
    "load_config": "twinshot.training",
    "TrainConfig": "twinshot.training",
    "evaluate_heldout": "twinshot.training",
    # evaluation
    "evaluate_episodes": "twinshot.evaluation",
    "evaluate_verification": "twinshot.evaluation",
    "evaluate_omniglot_runs": "twinshot.evaluation",
    # data
    "load_dataset": "twinshot.data",
    "class_split": "twinshot.data",
    "EpisodeSampler": "twinshot.data",
    "Preprocessing": "twinshot.data",
    # losses
    "ContrastiveLoss": "twinshot.losses",
    "TripletLoss": "twinshot.losses",
    "PairBCELoss": "twinshot.losses",
    "PrototypicalLoss": "twinshot.losses",
    # export
    "export_model": "twinshot.export",
    "OnnxEmbedder": "twinshot.export",
    # errors
    "TwinshotError": "twinshot.errors",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'twinshot' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
