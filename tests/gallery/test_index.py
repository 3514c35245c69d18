"""Exact search against a brute-force reference and faiss; HNSW recall against exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twinshot.errors import ConfigError
from twinshot.gallery import index as index_mod
from twinshot.gallery.index import ExactIndex, HNSWConfig, HNSWIndex, Scorer, StoredMatrix, approximate_recall
from twinshot.models import CosineHead, EuclideanHead, WeightedL1Head

from tests.gallery.helpers import clustered

faiss = pytest.importorskip("faiss")


def _heads() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "cosine": CosineHead(scale=7.0, bias=-3.0),
        "euclidean": EuclideanHead(scale=2.0, bias=1.5),
        "weighted_l1": WeightedL1Head(embedding_dim=12),
        "cosine_negative_scale": CosineHead(scale=-4.0, bias=1.0),
    }


def _exact(head: torch.nn.Module, gallery: np.ndarray) -> ExactIndex:
    scorer = Scorer(head)
    return ExactIndex(scorer, StoredMatrix(scorer.width(gallery.shape[1]), scorer.prepare(gallery)))


def _reference(head: torch.nn.Module, queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return head.pairwise_logits(torch.from_numpy(queries), torch.from_numpy(gallery)).numpy()


@pytest.mark.parametrize("name", list(_heads()))
def test_fast_logits_equal_the_heads_pairwise_logits(name: str) -> None:
    head = _heads()[name]
    g = clustered(300, 12, 10, seed=1)
    q = clustered(7, 12, 10, seed=2)
    scorer = Scorer(head)
    stored = scorer.prepare(g)
    got = scorer.logits(scorer.prepare_queries(q), stored)
    np.testing.assert_allclose(got, _reference(head, q, g), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(_heads()))
def test_exact_search_matches_brute_force(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_mod, "CHUNK_ELEMENTS", 64)  # many chunks: exercises the merge
    head = _heads()[name]
    g = np.random.default_rng(0).standard_normal((2500, 12)).astype(np.float32)
    q = np.random.default_rng(1).standard_normal((9, 12)).astype(np.float32)
    idx = _exact(head, g)
    scores, rows = idx.search(idx.scorer.prepare_queries(q), 10)
    ref = _reference(head, q, g)
    ref_rows = np.argsort(-ref, axis=1, kind="stable")[:, :10]
    assert scores.shape == rows.shape == (9, 10)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_allclose(scores, np.take_along_axis(ref, ref_rows, 1), rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first


def test_exact_search_with_fewer_rows_than_k() -> None:
    head = CosineHead()
    g = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    idx = _exact(head, g)
    scores, rows = idx.search(idx.scorer.prepare_queries(g[:2]), 10)
    assert scores.shape == (2, 3) and sorted(rows[0].tolist()) == [0, 1, 2]
    assert rows[0, 0] == 0 and rows[1, 0] == 1  # each vector finds itself first


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_search_agrees_with_faiss_flat(metric: str) -> None:
    g = clustered(5000, 32, 50, seed=3)
    q = clustered(20, 32, 50, seed=4)
    head = CosineHead() if metric == "cosine" else EuclideanHead()
    idx = _exact(head, g)
    _, rows = idx.search(idx.scorer.prepare_queries(q), 10)
    if metric == "cosine":
        flat = faiss.IndexFlatIP(32)
        gn = g / np.linalg.norm(g, axis=1, keepdims=True)
        flat.add(gn)
        _, ref = flat.search(q / np.linalg.norm(q, axis=1, keepdims=True), 10)
    else:
        flat = faiss.IndexFlatL2(32)
        flat.add(g)
        _, ref = flat.search(q, 10)
    assert approximate_recall(ref, rows) >= 0.999  # same sets up to float ties
    np.testing.assert_array_equal(rows[:, 0], ref[:, 0])


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_hnsw_recall_against_exact(metric: str) -> None:
    g = clustered(8000, 32, 200, seed=5)
    q = clustered(100, 32, 200, seed=6)
    head = CosineHead() if metric == "cosine" else EuclideanHead()
    exact = _exact(head, g)
    qq = exact.scorer.prepare_queries(q)
    _, exact_rows = exact.search(qq, 10)
    hnsw = HNSWIndex(exact.scorer, HNSWConfig(m=16, ef_construction=64, ef_search=64))
    ids = np.arange(100, 100 + len(g), dtype=np.int64)  # image ids differ from row positions
    hnsw.build(exact.matrix.data, ids)
    # as the gallery does: fetch 64 candidates, rescore them exactly, keep the best 10
    cand = hnsw.candidates(qq, 64, ids)
    logits = exact.scorer.logits_at(qq, exact.matrix.data, cand)
    order = np.argsort(-logits, axis=1, kind="stable")[:, :10]
    top = np.take_along_axis(cand, order, 1)
    recall = approximate_recall(exact_rows, top)
    assert recall >= 0.98, recall
    assert approximate_recall(exact_rows, hnsw.candidates(qq, 10, ids)) >= 0.85  # raw top-10, no rescoring
    # the rescored scores are exact
    ref = _reference(head, q, g)
    ok = cand >= 0
    np.testing.assert_allclose(logits[ok], np.take_along_axis(ref, np.maximum(cand, 0), 1)[ok], rtol=1e-4, atol=1e-4)


def test_hnsw_sync_adds_and_filters_removed_rows() -> None:
    g = clustered(1000, 16, 20, seed=7)
    scorer = Scorer(CosineHead())
    stored = scorer.prepare(g)
    ids = np.arange(1, 1001, dtype=np.int64)
    hnsw = HNSWIndex(scorer, HNSWConfig(m=8, rebuild_fraction=0.5))
    hnsw.build(stored[:800], ids[:800])
    assert hnsw.sync(stored, ids) == 200 and hnsw.index.ntotal == 1000
    keep = np.ones(1000, bool)
    keep[::3] = False  # remove a third: filtered, not rebuilt
    assert hnsw.sync(stored[keep], ids[keep]) == 0 and hnsw.dead == int((~keep).sum())
    q = scorer.prepare_queries(g[:5])
    cand = hnsw.candidates(q, 20, ids[keep])
    assert cand.min() >= -1 and cand.max() < keep.sum()
    kept_ids = ids[keep]
    assert not np.isin(kept_ids[cand[cand >= 0]], ids[~keep]).any()
    # removing more than rebuild_fraction rebuilds
    keep2 = keep.copy()
    keep2[:700] = False
    assert hnsw.sync(stored[keep2], ids[keep2]) == int(keep2.sum()) and hnsw.dead == 0


def test_hnsw_refuses_heads_without_a_metric() -> None:
    with pytest.raises(ConfigError, match="cosine or euclidean"):
        HNSWIndex(Scorer(WeightedL1Head(embedding_dim=4)))
    with pytest.raises(ConfigError, match="scale"):
        HNSWIndex(Scorer(CosineHead(scale=-1.0)))


def test_missing_faiss_explains_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name: str, *args, **kwargs):
        if name == "faiss":
            raise ImportError("no faiss")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    from twinshot.errors import TwinshotError

    with pytest.raises(TwinshotError, match=r"pip install 'twinshot\[index\]'"):
        index_mod.import_faiss()


def test_stored_matrix_grows_and_compacts() -> None:
    m = StoredMatrix(3)
    for i in range(5):
        m.append(np.full((700, 3), i, np.float32))
    assert len(m) == 3500 and m.data[-1, 0] == 4
    mask = np.zeros(3500, bool)
    mask[700:1400] = True
    m.keep(mask)
    assert len(m) == 700 and np.all(m.data == 1)


@pytest.mark.parametrize("norm", [1.0, 30.0, 300.0])
def test_euclidean_scores_of_near_identical_embeddings_are_exact(norm: float, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 11, defect 9: the product form |q|^2 - (2 q.g - |g|^2) cancels in float32, so an
    # enrolled image scored against itself came out up to 0.4 logits low at norm 100.
    rng = np.random.default_rng(3)
    g = (norm * rng.standard_normal((500, 64)) / 8).astype(np.float32)
    g[250:260] = g[:10] + np.float32(1e-3 * norm / 8) * rng.standard_normal((10, 64)).astype(np.float32)
    head = EuclideanHead()
    head.set_logistic(5.0, 2.0)
    scorer = Scorer(head)
    stored = scorer.prepare(g)
    q = scorer.prepare_queries(g[:10])
    g64 = g.astype(np.float64)
    ref = 5.0 * -np.sqrt(((g64[:10, None] - g64[None]) ** 2).sum(-1) + 1e-12) + 2.0
    tol = 1e-4 * (1.0 + np.abs(ref).max())
    assert np.abs(scorer.logits(q, stored) - ref).max() <= tol
    monkeypatch.setattr(index_mod, "CHUNK_ELEMENTS", 64 * 3)  # exact rescoring in blocks of 3 pairs
    logits, rows = ExactIndex(scorer, StoredMatrix(stored.shape[1], stored)).search(q, 3)
    assert (rows[:, 0] == np.arange(10)).all() and (rows[:, 1] == np.arange(250, 260)).all()
    assert np.abs(logits - np.take_along_axis(ref, rows, 1)).max() <= tol
    assert (np.diff(logits, axis=1) <= 0).all()  # still best first
    assert np.abs(scorer.logits_at(q, stored, rows) - logits).max() == 0.0
