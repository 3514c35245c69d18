"""Exact search gives the same rows, scores and tie order on every engine, equal to a
float64 brute force; the engine is measured and cached per machine."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from twinshot.errors import ConfigError
from twinshot.gallery import search_engine as se
from twinshot.gallery.index import ExactIndex, Scorer, StoredMatrix
from twinshot.gallery.search_engine import ENGINES, EnginePlan, SearchEngine, resolve_plan
from twinshot.models import CosineHead, EuclideanHead

ENGINE_CASES = {
    **{name: e for name, e in ENGINES.items()},
    "numpy-small-chunks": SearchEngine("numpy", "numpy", 64),
    "torch-small-chunks": SearchEngine("torch", "torch", 64),
    "mixed-small-chunks": SearchEngine("numpy", "torch", 4096),
}
HEADS = {
    "cosine": lambda: CosineHead(scale=7.0, bias=-3.0),
    "euclidean": lambda: EuclideanHead(scale=2.0, bias=1.5),
    "cosine_negative_scale": lambda: CosineHead(scale=-4.0, bias=1.0),
}


def _data() -> tuple[np.ndarray, np.ndarray]:
    """3000 random 12-d rows with 40 exact copies of row 7 (more ties than k + margin) and
    3 of row 100; queries: row 7 itself, row 100 + noise, and random ones."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal((3000, 12)).astype(np.float32)
    g[200:240] = g[7]
    g[[1500, 2999, 2000]] = g[100]
    q = np.concatenate([g[7:8], g[100:101] + 0.01, rng.standard_normal((5, 12)).astype(np.float32)])
    return g, q


def _reference(head_name: str, g: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 brute force: logits, best first, equal logits by lower row."""
    head = HEADS[head_name]()
    scale, bias = float(head.scale.detach()), float(head.bias.detach())
    g64, q64 = g.astype(np.float64), q.astype(np.float64)
    if head_name == "euclidean":
        sim = -np.sqrt(np.maximum(((q64[:, None, :] - g64[None]) ** 2).sum(-1), 0) + 1e-12)
    else:
        sim = (q64 / np.linalg.norm(q64, axis=1, keepdims=True)) @ (g64 / np.linalg.norm(g64, axis=1, keepdims=True)).T
    logits = scale * sim + bias
    rows = np.arange(g.shape[0])
    order = np.stack([np.lexsort((rows, -row)) for row in logits])[:, :k]
    return np.take_along_axis(logits, order, 1), order


def _search(engine: SearchEngine, head_name: str, g: np.ndarray, q: np.ndarray, k: int):
    scorer = Scorer(HEADS[head_name]())
    idx = ExactIndex(scorer, StoredMatrix(scorer.width(g.shape[1]), scorer.prepare(g)), engine=engine)
    return idx.search(scorer.prepare_queries(q), k)


@pytest.mark.parametrize("head_name", list(HEADS))
@pytest.mark.parametrize("k", [1, 10, 45])
def test_every_engine_equals_the_float64_reference(head_name: str, k: int) -> None:
    g, q = _data()
    want_s, want_r = _reference(head_name, g, q, k)
    results = {name: _search(e, head_name, g, q, k) for name, e in ENGINE_CASES.items()}
    for name, (scores, rows) in results.items():
        if head_name != "cosine_negative_scale":  # (negative scale: the farthest rows, no ties)
            assert set(rows[0, : min(k, 41)].tolist()) <= {7, *range(200, 240)}, name
        np.testing.assert_array_equal(rows, want_r, err_msg=name)
        np.testing.assert_allclose(scores, want_s, rtol=1e-5, atol=1e-5, err_msg=name)
    first_s, first_r = results["torch"]
    for name, (scores, rows) in results.items():  # bit-identical across engines
        np.testing.assert_array_equal(scores, first_s, err_msg=name)
        np.testing.assert_array_equal(rows, first_r, err_msg=name)


def test_fewer_rows_than_k_and_no_queries() -> None:
    g, q = _data()
    for engine in ENGINE_CASES.values():
        scores, rows = _search(engine, "cosine", g[:5], q, 10)
        assert scores.shape == rows.shape == (len(q), 5)
        scores, rows = _search(engine, "cosine", g, q[:0], 10)
        assert scores.shape == (0, 0)


def test_stored_matrix_tracks_its_largest_norm() -> None:
    m = StoredMatrix(2, np.array([[3.0, 4.0]], np.float32))
    assert m.max_norm == pytest.approx(5.0)
    m.append(np.array([[6.0, 8.0], [0.0, 1.0]], np.float32))
    assert m.max_norm == pytest.approx(10.0)
    m.keep(np.array([True, False, True]))
    assert m.max_norm == pytest.approx(5.0)


def test_auto_measures_once_then_reads_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "engines.json"
    monkeypatch.setattr(se, "_memo", {})
    monkeypatch.setattr(se, "CHUNK_CHOICES", (1 << 21,))  # a short measurement
    plan = resolve_plan("auto", 16, 10**6, cache=cache)
    assert plan.source == "measured"
    entry = json.loads(cache.read_text())[se.machine_key(16)]
    assert entry["single"] == plan.single.to_dict() and "measured_ms" in entry
    monkeypatch.setattr(se, "_memo", {})
    again = resolve_plan("auto", 16, 10**6, cache=cache)
    assert again.source == "cached" and again.single == plan.single and again.batch == plan.batch
    assert resolve_plan("auto", 16, 100, cache=cache).source == "default"  # small: not measured


def test_named_engines_and_no_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_plan("numpy", 16, 10**6).single == ENGINES["numpy"]
    plan = EnginePlan(ENGINES["numpy"], ENGINES["torch"])
    assert resolve_plan(plan, 16, 10).for_queries(1) == ENGINES["numpy"] and plan.for_queries(100) == ENGINES["torch"]
    with pytest.raises(ConfigError, match="unknown search engine"):
        resolve_plan("fast", 16, 10)
    with pytest.raises(ConfigError):
        SearchEngine("cuda", "torch")
    monkeypatch.setattr(se, "_torch_loaded", lambda: False)
    assert resolve_plan("auto", 16, 10**6).single == ENGINES["numpy"]
    assert not resolve_plan("torch", 16, 10).single.needs_torch()
    assert all(not e.needs_torch() for e in se._candidates())


def test_machine_key_names_the_cpu_and_threads() -> None:
    key = se.machine_key(129)
    assert se.cpu_model() in key and "threads=" in key and "w=129" in key


@pytest.mark.parametrize("head_name", list(HEADS))
def test_chunks_use_the_engine_and_give_exact_logits(head_name: str) -> None:
    """Every-row logits (what the mean rule aggregates) come from the engine in use, in
    chunks of its size, and equal the float64 reference on every engine."""
    g, q = _data()
    want, _ = _reference(head_name, g, q, g.shape[0])
    want_full = np.empty_like(want)
    _, order = _reference(head_name, g, q, g.shape[0])
    np.put_along_axis(want_full, order, want, 1)
    for name, engine in ENGINE_CASES.items():
        scorer = Scorer(HEADS[head_name]())
        idx = ExactIndex(scorer, StoredMatrix(scorer.width(g.shape[1]), scorer.prepare(g)), engine=engine)
        parts = list(idx.chunks(scorer.prepare_queries(q)))
        step = max(1024, engine.chunk_elements // len(q))
        assert [s for s, _ in parts] == list(range(0, g.shape[0], step)), name
        np.testing.assert_allclose(np.concatenate([p for _, p in parts], 1), want_full, rtol=1e-5, atol=1e-4, err_msg=name)
