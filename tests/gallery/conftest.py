"""Keep the ONNX export cache of ``inference="auto"`` inside the test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _onnx_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    import twinshot.gallery.inference as inference

    cache = tmp_path_factory.getbasetemp() / "onnx-cache"
    monkeypatch.setattr(inference, "DEFAULT_CACHE_DIR", cache)
    return cache
