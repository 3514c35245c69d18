"""Gallery benchmark: open time, identify latency and memory at up to 1,000,000 embeddings.

    python -m bench.gallery_bench --sizes 10000 100000 1000000
    python -m bench.gallery_bench --tiny            # a one-second smoke run (used by the tests)

For each size ``N`` it enrolls ``N`` identities with one synthetic clustered embedding each
(``--dim`` dimensions, L2-normalised, cosine head) into a fresh gallery file, then measures:

* ``enroll_s``, ``file_mb``: one bulk enrollment transaction and the file's size;
* ``open_s``: :meth:`Gallery.open` (fingerprint check, one read of the packed embedding
  blocks, normalisation), and the resident memory it added per embedding;
* identify latency (median wall time) for batches of 1 and of ``--queries`` queries, k=10,
  through :meth:`Gallery.identify_embeddings` (exact search);
* the raw top-10 search engines on the same matrix: twinshot's exact index (numpy matmul +
  chunked ``torch.topk``), numpy only (matmul + ``argpartition``), torch only (matmul +
  ``topk``), and faiss ``IndexFlatIP``;
* faiss HNSW (the gallery's approximate index): build time, latency, recall@10 against
  exact search, and the gallery's open + first search with the index cached in the file.

Embedding images is not included (it depends on the model); queries are embeddings.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


#: HNSW search beam widths measured (the gallery's default is HNSWConfig.ef_search).
HNSW_EF_SWEEP = (64, 128, 256, 512)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _median_time(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def clustered_embeddings(n: int, dim: int, clusters: int, seed: int, centre_seed: int = 0) -> np.ndarray:
    """float32 ``(n, dim)`` unit vectors around ``clusters`` random centres (noise 0.5/sqrt(dim))."""
    centres = np.random.default_rng(centre_seed).standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    step = 200_000
    for a in range(0, n, step):
        b = min(n, a + step)
        out[a:b] = centres[rng.integers(0, clusters, b - a)]
        out[a:b] += (0.5 / np.sqrt(dim)) * rng.standard_normal((b - a, dim)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def _model(dim: int) -> Any:
    from twinshot.data.images import Preprocessing
    from twinshot.models import ModelSpec, build_model

    torch.manual_seed(0)
    spec = ModelSpec(
        encoder="compact",
        encoder_params={"widths": [8, 8], "embedding_dim": dim},
        head="cosine",
        preprocessing=Preprocessing(size=(28, 28), invert=True),
    )
    return build_model(spec).eval()


def _engines(matrix: np.ndarray, queries: np.ndarray, k: int, repeat: int) -> dict[str, float]:
    """Latency (s) of raw top-k search engines over the same normalised matrix."""
    from twinshot.gallery.index import ExactIndex, Scorer, StoredMatrix
    from twinshot.models import CosineHead

    scorer = Scorer(CosineHead())
    exact = ExactIndex(scorer, StoredMatrix(matrix.shape[1], matrix))
    g_t = torch.from_numpy(matrix)
    out: dict[str, float] = {}
    for q_n in (1, len(queries)):
        q = queries[:q_n]
        qq = scorer.prepare_queries(q)
        q_t = torch.from_numpy(q)
        rep = repeat if q_n == 1 else max(1, repeat // 5)
        out[f"twinshot_exact_q{q_n}_s"] = _median_time(lambda: exact.search(qq, k), rep)
        out[f"numpy_argpartition_q{q_n}_s"] = _median_time(lambda: np.argpartition(-(q @ matrix.T), k, axis=1)[:, :k], rep)
        out[f"torch_topk_q{q_n}_s"] = _median_time(lambda: torch.topk(q_t @ g_t.T, k, dim=1), rep)
        try:
            import faiss

            flat = faiss.IndexFlatIP(matrix.shape[1])
            flat.add(matrix)
            out[f"faiss_flat_q{q_n}_s"] = _median_time(lambda: flat.search(q, k), rep)
        except ImportError:
            pass
    return out


def probe_open(path: str, dim: int) -> dict[str, float]:
    """Open a gallery in this (fresh) process: wall time, resident memory added per
    embedding, and the first identification (which also groups rows by identity)."""
    from twinshot.gallery import Gallery

    model = _model(dim)
    queries = clustered_embeddings(1, dim, 10, seed=3)
    gc.collect()
    rss0 = _rss_bytes()
    t = time.perf_counter()
    g = Gallery.open(path, model, index="exact")
    open_s = time.perf_counter() - t
    rss_open = _rss_bytes()
    t = time.perf_counter()
    g.identify_embeddings(queries, k=10)
    first = time.perf_counter() - t
    n = max(1, g.n_embeddings)
    out = {
        "open_s": open_s,
        "first_identify_s": first,
        "rss_bytes_per_embedding_open": (rss_open - rss0) / n,
        "rss_bytes_per_embedding_after_identify": (_rss_bytes() - rss0) / n,
    }
    g.close()
    return out


def _open_in_fresh_process(path: Path, dim: int) -> dict[str, float]:
    import subprocess

    root = Path(__file__).resolve().parents[1]
    code = "import json, sys; from bench.gallery_bench import probe_open; print(json.dumps(probe_open(sys.argv[1], int(sys.argv[2]))))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(root / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code, str(path), str(dim)], capture_output=True, text=True, env=env, cwd=root)
    if proc.returncode != 0:
        raise RuntimeError(f"open probe failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_size(
    n: int, *, dim: int, n_queries: int, repeat: int, hnsw: bool, workdir: Path, hnsw_config: Any = None,
    fresh_process: bool = True, hnsw_max: int = 10**9,
) -> dict[str, Any]:
    from twinshot.gallery import Gallery
    from twinshot.gallery.index import approximate_recall

    model = _model(dim)
    result: dict[str, Any] = {"n": n, "dim": dim}
    clusters = max(10, n // 10)
    vectors = clustered_embeddings(n, dim, clusters, seed=1)
    queries = clustered_embeddings(n_queries, dim, clusters, seed=2)
    path = workdir / f"gallery_{n}.db"

    t = time.perf_counter()
    with Gallery.create(path, model, overwrite=True) as g:
        g.enroll_many((f"id{i:07d}", vectors[i : i + 1], None, None) for i in range(n))
    result["enroll_s"] = time.perf_counter() - t
    result["file_mb"] = path.stat().st_size / 1e6
    del vectors
    gc.collect()

    # a fresh process gives clean memory figures; the tiny run opens in this one (fast)
    result.update(_open_in_fresh_process(path, dim) if fresh_process else probe_open(str(path), dim))
    g = Gallery.open(path, model, index="exact")
    result["matrix_bytes_per_embedding"] = g._matrix.nbytes() / n
    result["identify_q1_s"] = _median_time(lambda: g.identify_embeddings(queries[:1], k=10), repeat)
    result[f"identify_q{n_queries}_s"] = _median_time(lambda: g.identify_embeddings(queries, k=10), max(1, repeat // 5))
    result["search_q1_s"] = _median_time(lambda: g.search_embeddings(queries[:1], k=10), repeat)
    exact_rows = g._exact.search(g._scorer.prepare_queries(queries), 10)[1]
    result.update(_engines(g._matrix.data, queries, 10, repeat))

    if hnsw and n <= hnsw_max:
        try:
            import faiss  # noqa: F401
        except ImportError:
            result["hnsw"] = "faiss not installed"
        else:
            t = time.perf_counter()
            g.hnsw_config = hnsw_config or g.hnsw_config
            info = g.build_index()
            result["hnsw_build_and_store_s"] = time.perf_counter() - t
            result["hnsw_m"] = info["m"]
            result["hnsw_ef_construction"] = g.hnsw_config.ef_construction
            result["hnsw_ef_search"] = g.hnsw_config.ef_search
            g.close()
            result["file_mb_with_hnsw"] = path.stat().st_size / 1e6
            t = time.perf_counter()
            h = Gallery.open(path, model, index="hnsw", hnsw=g.hnsw_config)
            result["hnsw_open_s"] = time.perf_counter() - t
            t = time.perf_counter()
            h.search_embeddings(queries[:1], k=10)
            result["hnsw_first_search_s"] = time.perf_counter() - t  # loads the cached index
            exact_ids = np.where(exact_rows >= 0, h._ids[np.maximum(exact_rows, 0)], -1)
            ann = h._ann()
            for ef in HNSW_EF_SWEEP:  # recall and latency as the search beam widens
                ann.config = dataclasses.replace(ann.config, ef_search=ef)
                tag = f"hnsw_ef{ef}"
                result[f"{tag}_identify_q1_s"] = _median_time(lambda: h.identify_embeddings(queries[:1], k=10), repeat)
                result[f"{tag}_identify_q{n_queries}_s"] = _median_time(
                    lambda: h.identify_embeddings(queries, k=10), max(1, repeat // 5)
                )
                approx_ids = h.search_embeddings(queries, k=10).image_ids
                result[f"{tag}_recall_at_1"] = float(np.mean(approx_ids[:, 0] == exact_ids[:, 0]))
                result[f"{tag}_recall_at_10"] = approximate_recall(exact_ids, approx_ids)
            g = h
    g.close()
    path.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return result


def machine() -> dict[str, Any]:
    import faiss  # noqa: F401  (version below)

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "faiss": getattr(sys.modules.get("faiss"), "__version__", "?"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20, help="Timed repetitions for batch-1 latencies.")
    parser.add_argument("--no-hnsw", action="store_true", help="Skip the faiss HNSW part.")
    parser.add_argument("--hnsw-max", type=int, default=1_000_000, help="Skip HNSW above this size (its build dominates).")
    parser.add_argument("--hnsw-m", type=int, default=None, help="HNSW neighbours per node (default: the gallery's).")
    parser.add_argument("--hnsw-ef-construction", type=int, default=None, help="HNSW build beam width (default: the gallery's).")
    parser.add_argument("--workdir", type=Path, default=None, help="Where the gallery files go (default: a temp dir).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the results to this file.")
    parser.add_argument("--tiny", action="store_true", help="A one-second smoke run (2,000 x 16-d).")
    args = parser.parse_args(argv)
    if args.tiny:
        args.sizes, args.dim, args.queries, args.repeat = [2000], 16, 10, 3
    from twinshot.gallery import HNSWConfig

    default = HNSWConfig()
    config = HNSWConfig(
        m=args.hnsw_m or default.m,
        ef_construction=args.hnsw_ef_construction or default.ef_construction,
        ef_search=default.ef_search,
    )
    try:
        env = machine()
    except ImportError:
        env = {"python": platform.python_version(), "cpus": os.cpu_count(), "torch": torch.__version__}
    out: dict[str, Any] = {"command": "python -m bench.gallery_bench " + " ".join(argv if argv is not None else sys.argv[1:]), "machine": env, "results": []}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for n in args.sizes:
            r = bench_size(
                n, dim=args.dim, n_queries=args.queries, repeat=args.repeat, hnsw=not args.no_hnsw,
                workdir=workdir, hnsw_config=config, fresh_process=not args.tiny, hnsw_max=args.hnsw_max,
            )
            out["results"].append(r)
            print(json.dumps(r), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
