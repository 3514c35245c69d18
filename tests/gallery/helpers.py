"""Small models and data shared by the gallery tests (and tests/cli/test_gallery.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from twinshot.data.images import Preprocessing
from twinshot.models import ModelSpec, SiameseNetwork, build_model, save_model


def tiny_model(head: str = "cosine", dim: int = 16, seed: int = 0, size: int = 28) -> SiameseNetwork:
    """A small untrained compact encoder (2 blocks, ``dim``-d) with ``head``; seeded."""
    torch.manual_seed(seed)
    spec = ModelSpec(
        encoder="compact",
        encoder_params={"widths": [8, 8], "embedding_dim": dim},
        head=head,
        head_params={},
        preprocessing=Preprocessing(size=(size, size), invert=True),
    )
    return build_model(spec).eval()


def saved_model(directory: Path, head: str = "cosine", dim: int = 16, seed: int = 0) -> Path:
    """:func:`tiny_model` saved as a checkpoint directory; returns it."""
    save_model(tiny_model(head, dim, seed), directory)
    return directory


def random_images(n: int, size: int = 28, seed: int = 0) -> list[np.ndarray]:
    """``n`` random uint8 grey images ``(size, size)``."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size), dtype=np.uint8) for _ in range(n)]


def clustered(n: int, dim: int, clusters: int, noise: float = 0.3, seed: int = 0, centre_seed: int = 0) -> np.ndarray:
    """float32 ``(n, dim)`` points around ``clusters`` random unit-norm centres; the centres
    depend only on ``centre_seed``, so calls with other ``seed`` draw from the same clusters."""
    centres = np.random.default_rng(centre_seed).standard_normal((clusters, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    which = rng.integers(0, clusters, n)
    return (centres[which] + noise / np.sqrt(dim) * rng.standard_normal((n, dim))).astype(np.float32)
