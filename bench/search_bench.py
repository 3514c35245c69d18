"""Gallery search side by side, with median and spread over repeats: exact search of
twinshot vs numpy (matrix product + ``argpartition``) vs faiss ``IndexFlatIP`` vs the bare
matrix product (the faster of numpy's and torch's), and approximate search of twinshot (faiss HNSW candidates rescored
exactly) vs bare faiss HNSW, with recall@1 / recall@10 against exact search; plus
enrollment, file size, open time and memory per embedding from :mod:`bench.gallery_bench`.

Used by ``bench/run.py``. Data: clustered synthetic unit vectors
(:func:`bench.gallery_bench.clustered_embeddings`, ``n // 10`` clusters), cosine head.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from bench.gallery_bench import _model, _open_in_fresh_process, clustered_embeddings, probe_open
from bench.training_bench import summary

K = 10


def timings(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall seconds of ``repeats`` calls of each function, timed round-robin (one call of
    each in turn), after ``warmup`` rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t)
    return out


def _numpy_topk(q: np.ndarray, m: np.ndarray, k: int) -> np.ndarray:
    s = q @ m.T
    part = np.argpartition(-s, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, part, 1), axis=1)
    return np.take_along_axis(part, order, 1)


def exact_engines(matrix: np.ndarray, queries: np.ndarray, *, repeats: int, batch_sizes: Sequence[int]) -> dict[str, Any]:
    """Seconds per call (:func:`summary`) of each exact engine for each query batch size
    (``twinshot_exact``: the engine measured on this machine; ``twinshot_exact_numpy`` /
    ``_torch``: twinshot forced onto one engine), and the plan measured (``engine``)."""
    from twinshot.gallery.index import ExactIndex, Scorer, StoredMatrix
    from twinshot.models import CosineHead

    scorer = Scorer(CosineHead())
    exact = ExactIndex(scorer, StoredMatrix(matrix.shape[1], matrix))
    # the engine measured on this machine ("auto"), and each fixed engine for comparison
    fixed = {name: ExactIndex(scorer, exact.matrix, engine=name) for name in ("numpy", "torch")}
    out: dict[str, Any] = {"engine": exact.plan().to_dict()}
    try:
        import faiss

        flat = faiss.IndexFlatIP(matrix.shape[1])
        flat.add(matrix)
    except ImportError:
        flat = None
    for b in batch_sizes:
        q = np.ascontiguousarray(queries[:b])
        qq = scorer.prepare_queries(q)
        rep = repeats if b == 1 else max(3, repeats // 4)
        q_t, m_t = torch.from_numpy(q), torch.from_numpy(matrix)
        # timed round-robin: on a shared machine whose load drifts, all engines see alike
        row: dict[str, Any] = {name: summary(t) for name, t in interleaved({
            "twinshot_exact": lambda: exact.search(qq, K),
            **{f"twinshot_exact_{name}": (lambda forced=forced: forced.search(qq, K)) for name, forced in fixed.items()},
            "numpy_argpartition": lambda: _numpy_topk(q, matrix, K),
            "bare_matmul_numpy": lambda: q @ matrix.T,
            "bare_matmul_torch": lambda: q_t @ m_t.T,
        }, rep).items()}
        # the bare product: the faster of numpy's and torch's (both call a BLAS sgemm)
        row["bare_matmul"] = min(row["bare_matmul_numpy"], row["bare_matmul_torch"], key=lambda sm: sm["median"])
        if flat is not None:
            row["faiss_flat"] = summary(timings(lambda: flat.search(q, K), rep))
        out[str(b)] = row
    return out


def approximate(
    gallery: Any, matrix: np.ndarray, queries: np.ndarray, exact_ids: np.ndarray, *, ef_values: Sequence[int], repeats: int
) -> list[dict[str, Any]]:
    """For each ``ef_search``: p50 (and spread) seconds per single query of twinshot's HNSW
    search and of the bare faiss index, and recall@1 / recall@10 of twinshot's results
    against exact search (``exact_ids``: image ids ``(Q, K)``)."""
    from twinshot.gallery.index import approximate_recall

    ann = gallery._ann()
    rows = []
    n_single = min(len(queries), max(20, repeats))
    for ef in ef_values:
        ann.config = dataclasses.replace(ann.config, ef_search=ef)
        approx_ids = gallery.search_embeddings(queries, k=K).image_ids
        per_query = []
        for i in range(n_single):
            qi = queries[i : i + 1]
            t = time.perf_counter()
            gallery.search_embeddings(qi, k=K)
            per_query.append(time.perf_counter() - t)
        ann.index.hnsw.efSearch = ef
        bare = []
        for i in range(n_single):
            qi = np.ascontiguousarray(queries[i : i + 1])
            t = time.perf_counter()
            ann.index.search(qi, K)
            bare.append(time.perf_counter() - t)
        rows.append({
            "ef_search": ef,
            "twinshot_hnsw_s_per_query": summary(per_query),
            "faiss_hnsw_s_per_query": summary(bare),
            "recall_at_1": float(np.mean(approx_ids[:, 0] == exact_ids[:, 0])),
            "recall_at_10": approximate_recall(exact_ids, approx_ids),
        })
    return rows


def bench_gallery(
    n: int, workdir: Path, *, dim: int = 128, n_queries: int = 100, repeats: int = 20, hnsw: bool = True,
    hnsw_m: int = 32, hnsw_ef_construction: int = 64, ef_values: Sequence[int] = (64, 128, 256, 512),
    fresh_process: bool = True,
) -> dict[str, Any]:
    """Everything measured at one gallery size ``n`` (see the module docstring)."""
    from twinshot.gallery import Gallery, HNSWConfig

    model = _model(dim)
    clusters = max(10, n // 10)
    vectors = clustered_embeddings(n, dim, clusters, seed=1)
    queries = clustered_embeddings(n_queries, dim, clusters, seed=2)
    path = workdir / f"gallery_{n}.db"
    out: dict[str, Any] = {"n": n, "dim": dim, "queries": n_queries, "clusters": clusters}
    t = time.perf_counter()
    with Gallery.create(path, model, overwrite=True) as g:
        g.enroll_many((f"id{i:07d}", vectors[i : i + 1], None, None) for i in range(n))
    out["enroll_s"] = time.perf_counter() - t
    out["file_mb"] = path.stat().st_size / 1e6
    del vectors
    gc.collect()
    opens = [(_open_in_fresh_process(path, dim) if fresh_process else probe_open(str(path), dim)) for _ in range(3 if fresh_process else 1)]
    out["open_s"] = summary([o["open_s"] for o in opens])
    out["rss_bytes_per_embedding"] = summary([o["rss_bytes_per_embedding_after_identify"] for o in opens])
    config = HNSWConfig(m=hnsw_m, ef_construction=hnsw_ef_construction)
    g = Gallery.open(path, model, index="exact", hnsw=config)
    try:
        out["matrix_bytes_per_embedding"] = g._matrix.nbytes() / n
        out["identify_s"] = {
            "1": summary(timings(lambda: g.identify_embeddings(queries[:1], k=K), repeats)),
            str(n_queries): summary(timings(lambda: g.identify_embeddings(queries, k=K), max(3, repeats // 4))),
        }
        out["exact"] = exact_engines(g._matrix.data, queries, repeats=repeats, batch_sizes=(1, n_queries))
        exact_rows = g._exact.search(g._scorer.prepare_queries(queries), K)[1]
        exact_ids = g._ids[exact_rows]
        if hnsw:
            try:
                import faiss  # noqa: F401
            except ImportError:
                out["hnsw"] = "faiss not installed"
            else:
                t = time.perf_counter()
                g.build_index()
                out["hnsw_build_s"] = time.perf_counter() - t
                out["hnsw_m"], out["hnsw_ef_construction"] = hnsw_m, hnsw_ef_construction
                g.index_kind = "hnsw"
                out["hnsw"] = approximate(g, g._matrix.data, queries, exact_ids, ef_values=ef_values, repeats=repeats)
    finally:
        g.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return out
