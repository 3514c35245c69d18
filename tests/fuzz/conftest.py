"""The fuzz corpus (built once per session) and a gallery to run it against."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fuzz.corpus import Item, build_corpus
from tests.gallery.helpers import saved_model


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Item]:
    """About 600 malformed and unusual image files (see tests/fuzz/corpus.py)."""
    return build_corpus(tmp_path_factory.mktemp("fuzz") / "corpus")


def stroke_image(seed: int, size: int = 48) -> np.ndarray:
    """Dark strokes on white paper: a picture the tiny model tells apart."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 255, np.uint8)
    for _ in range(4):
        r, c = rng.integers(2, size - 12, 2)
        if rng.random() < 0.5:
            img[r : r + 3, c : c + 10] = 0
        else:
            img[r : r + 10, c : c + 3] = 0
    return img


@pytest.fixture(scope="session")
def fuzz_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return saved_model(tmp_path_factory.mktemp("fuzz-model") / "tiny")


@pytest.fixture(scope="session")
def references(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two real pictures (PNG) to enroll and to pair the corpus with."""
    folder = tmp_path_factory.mktemp("fuzz-refs")
    paths = []
    for i in range(2):
        Image.fromarray(stroke_image(i)).save(folder / f"ref{i}.png")
        paths.append(folder / f"ref{i}.png")
    return paths
