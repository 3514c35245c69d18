"""Keep the ONNX export cache of ``inference="auto"`` inside the test session, and build
HNSW graphs on one thread: faiss's multi-threaded build inserts rows in a racy order, so
its graph (and recall) would change from run to run and machine to machine."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _onnx_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    import twinshot.gallery.inference as inference

    cache = tmp_path_factory.getbasetemp() / "onnx-cache"
    monkeypatch.setattr(inference, "DEFAULT_CACHE_DIR", cache)
    return cache


@pytest.fixture(autouse=True, scope="session")
def _deterministic_hnsw():
    try:
        import faiss
    except ImportError:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)
