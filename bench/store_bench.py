"""Galleries at scale, per store: enrollment throughput, identify latency (p50/p99 over
single queries) and recall against a float64 brute force, at 100k and 1M embeddings; and
bulk enrollment of an image folder with 1 and 2 worker processes
(:mod:`twinshot.gallery.bulk`).

The store is named by ``--store-uri`` (default: a SQLite file in the work directory), so
the same harness measures any store the gallery opens (e.g. ``postgresql://...`` once that
store exists); the gallery must not exist yet (it is created and, for a file, removed).

    python -m bench.store_bench --sizes 100000 --queries 200
    python -m bench.store_bench --store-uri postgresql://HOST/db/table --sizes 100000

Data: clustered synthetic 128-d unit vectors (:func:`bench.gallery_bench.clustered_embeddings`,
``n // 10`` clusters), one embedding per identity, cosine head; queries from the same
clusters. Used by ``bench/run.py`` (section ``stores``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.gallery_bench import _model, clustered_embeddings

K = 10


def latency(values: Sequence[float]) -> dict[str, float]:
    """p50, p99, mean and count of per-query seconds."""
    v = np.asarray(values, np.float64)
    return {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99)), "mean": float(v.mean()), "n": int(v.size)}


def brute_force_top(vectors: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Rows ``(Q, k)`` of the ``k`` best cosine scores by a float64 brute force (ties: lower row)."""
    q = queries.astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    best_s = np.full((len(q), 0), -np.inf)
    best_r = np.zeros((len(q), 0), np.int64)
    for a in range(0, vectors.shape[0], 100_000):
        g = vectors[a : a + 100_000].astype(np.float64)
        s = q @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T
        part = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], 1)
        best_r = np.concatenate([best_r, part + a], 1)
    order = np.stack([np.lexsort((r, -s)) for s, r in zip(best_s, best_r)])[:, :k]
    return np.take_along_axis(best_r, order, 1)


def rss_mb() -> tuple[float, float]:
    """``(current, peak)`` resident memory of this process in MiB (Linux ``/proc``)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def time_mode(target: str, dim: int, kind: str, search: str, queries: np.ndarray, want: np.ndarray,
              hnsw_m: int, hnsw_ef_construction: int, threads: int | None) -> dict[str, Any]:
    """One (index, search) row, measured in a fresh process (see :func:`bench_store`): open,
    warm, then ``len(queries)`` single-query identifications; the process's resident memory
    before opening the gallery and its peak after the queries."""
    import torch

    from twinshot.gallery import Gallery, HNSWConfig
    from twinshot.gallery.index import approximate_recall

    if threads:
        torch.set_num_threads(threads)
    model = _model(dim)
    rss_before, _ = rss_mb()
    row: dict[str, Any] = {"index": kind, "search": search}
    t = time.perf_counter()
    g = Gallery.open(target, model, index=kind, hnsw=HNSWConfig(m=hnsw_m, ef_construction=hnsw_ef_construction), search=search)
    try:
        if kind == "hnsw":
            g.build_index()
            row["hnsw_m"], row["hnsw_ef_construction"], row["hnsw_ef_search"] = hnsw_m, hnsw_ef_construction, g.hnsw_config.ef_search
        g.identify_embeddings(queries[:1], k=K)  # warm (loads, builds or measures what it needs)
        row["first_query_s"] = time.perf_counter() - t
        if kind == "exact" and search == "memory":
            row["engine"] = g._exact.plan().to_dict()
        times, got = [], []
        for i in range(len(queries)):
            t = time.perf_counter()
            res = g.identify_embeddings(queries[i : i + 1], k=K)[0]
            times.append(time.perf_counter() - t)
            got.append([int(c.identity[2:]) for c in res.candidates])
    finally:
        g.close()
    got_rows = np.full((len(queries), K), -1, np.int64)
    for i, r in enumerate(got):
        got_rows[i, : len(r)] = r
    row["identify_s"] = latency(times)
    row["recall_at_1"] = float(np.mean(got_rows[:, 0] == want[:, 0]))
    row["recall_at_10"] = approximate_recall(want, got_rows)
    row["rss_before_open_mb"], row["rss_peak_mb"] = rss_before, rss_mb()[1]
    return row


def bench_store(
    n: int, workdir: Path, *, store_uri: str | None = None, dim: int = 128, n_queries: int = 200,
    batch: int = 10_000, indexes: Sequence[str] = ("exact", "hnsw"), hnsw_m: int = 16, hnsw_ef_construction: int = 40,
    searches: Sequence[str] = ("memory",), threads: int | None = None, reuse: bool = False,
) -> dict[str, Any]:
    """Enroll ``n`` identities (one embedding each) in batches of ``batch`` per transaction,
    then time ``n_queries`` single-query identifications per index kind and search mode
    (``"memory"``: rows loaded; ``"database"``: the store searches, see
    :mod:`twinshot.gallery.search_db`), each in a fresh process so that its memory is its own.
    ``reuse``: a ``store_uri`` gallery that already holds these ``n`` rows (an earlier run's)
    is searched again without enrolling (no enrollment figure then)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from twinshot.gallery import Gallery

    model = _model(dim)
    clusters = max(10, n // 10)
    vectors = clustered_embeddings(n, dim, clusters, seed=1)
    queries = clustered_embeddings(n_queries, dim, clusters, seed=2)
    target = store_uri or str(workdir / f"store_{n}.db")
    out: dict[str, Any] = {"n": n, "dim": dim, "queries": n_queries, "store": "sqlite" if store_uri is None else store_uri.split(":", 1)[0],
                           "batch": batch, "k": K}
    existing = 0
    if reuse and store_uri is not None:
        try:
            with Gallery.open(target, model, search="database") as g:
                existing = g.n_embeddings
        except Exception:  # noqa: BLE001 - no such gallery: enroll it
            existing = 0
    if existing == n:
        out["enroll_s"] = out["enroll_per_s"] = None
    else:
        t = time.perf_counter()
        with Gallery.create(target, model, overwrite=True) as g:
            for a in range(0, n, batch):
                g.enroll_many((f"id{i:07d}", vectors[i : i + 1], None, None) for i in range(a, min(n, a + batch)))
        out["enroll_s"] = time.perf_counter() - t
        out["enroll_per_s"] = n / out["enroll_s"]
    want = brute_force_top(vectors, queries)
    del vectors
    rows = []
    for search in searches:
        for kind in indexes:
            if kind == "hnsw" and search == "memory" and store_uri is None:
                try:
                    import faiss  # noqa: F401
                except ImportError:
                    continue
            print(f"[bench] {n:,}: index {kind}, search {search}", file=sys.stderr, flush=True)
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                rows.append(pool.submit(time_mode, target, dim, kind, search, queries, want, hnsw_m, hnsw_ef_construction, threads).result())
    out["rows"] = rows
    if store_uri is None:
        for suffix in ("", "-wal", "-shm"):
            Path(target + suffix).unlink(missing_ok=True)
    return out


def bench_bulk(model_ref: str, n_identities: int, per_identity: int, workdir: Path, workers: Sequence[int] = (0, 1, 2)) -> dict[str, Any]:
    """Images/s of ``enroll-folder`` into a fresh SQLite gallery: ``0`` is the one-process,
    one-transaction path (:meth:`Gallery.enroll_folder`), ``w >= 1`` the bulk path with ``w``
    spawned workers (start-up included: each worker imports torch and loads the model)."""
    from bench.embedding_bench import write_identities
    from twinshot.gallery import Gallery
    from twinshot.gallery.bulk import BulkConfig, enroll_folder_bulk

    root = workdir / "bulk-identities"
    for j in range(per_identity):
        for path in write_identities(workdir / f"bulk-pass{j}", n_identities, seed=j):  # idNNNNNN/0.png
            (root / path.parent.name).mkdir(parents=True, exist_ok=True)
            os.replace(path, root / path.parent.name / f"{j}.png")
    n_images = n_identities * per_identity
    rows = []
    for w in workers:
        db = workdir / f"bulk-{w}.db"
        first: list[tuple[float, int]] = []  # (time, identities) at the first commit

        def on_commit(done: int, total: int) -> None:
            if done and not first:
                first.append((time.perf_counter(), done))

        with Gallery.create(db, model_ref, overwrite=True, inference="torch") as g:
            t = time.perf_counter()
            if w == 0:
                g.enroll_folder(root)
            else:
                enroll_folder_bulk(g, root, BulkConfig(workers=w, task_images=64), progress=on_commit)
            end = time.perf_counter()
            assert g.n_embeddings == n_images
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        row = {"workers": w, "seconds": end - t, "images_per_s": n_images / (end - t)}
        if first and first[0][1] < n_identities:
            # after the first commit: the workers are up; images/s without their start-up
            row["first_commit_s"] = first[0][0] - t
            row["steady_images_per_s"] = (n_identities - first[0][1]) * per_identity / (end - first[0][0])
        rows.append(row)
    return {"identities": n_identities, "images": n_images, "rows": rows}


def run(sizes: Sequence[int], workdir: Path, *, store_uri: str | None = None, n_queries: int = 200, dim: int = 128,
        hnsw_up_to: int = 100_000, bulk: tuple[int, int] | None = (500, 2), tiny: bool = False,
        searches: Sequence[str] = ("memory",), indexes: Sequence[str] | None = None, reuse: bool = False) -> dict[str, Any]:
    """Every measurement of this module (what ``bench/run.py`` records)."""
    import torch

    threads = torch.get_num_threads()
    out: dict[str, Any] = {"store_uri": store_uri or "sqlite file", "threads": threads, "sizes": []}
    for n in sizes:
        print(f"[bench] store {n:,} embeddings", file=sys.stderr, flush=True)
        kinds = indexes or (("exact", "hnsw") if n <= hnsw_up_to else ("exact",))
        out["sizes"].append(bench_store(n, workdir, store_uri=store_uri, dim=dim, n_queries=n_queries, indexes=kinds,
                                        searches=searches, threads=threads, reuse=reuse))
    if bulk is not None:
        from bench import embedding_bench as eb
        from twinshot.models import save_model

        model, name = eb.default_model(tiny=tiny)
        ref = workdir / "bulk-model"
        save_model(model, ref)
        out["bulk"] = {"model": name, **bench_bulk(str(ref), bulk[0], bulk[1], workdir)}
    return out


def markdown_lines(d: dict[str, Any]) -> list[str]:
    """The report's rows for :func:`run`'s result."""
    lines = [
        f"Store: {d['store_uri']}. Clustered synthetic 128-d unit vectors, one per identity, enrolled in transactions of "
        f"10,000 identities; identify latency over single queries (k = 10); recall against a float64 brute force.",
        "",
        "| embeddings | store | enroll /s | index | search | first query s | identify p50 ms | identify p99 ms | recall@1 | recall@10 | "
        "RSS before open MiB | peak RSS MiB | exact engine |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in d["sizes"]:
        for r in s["rows"]:
            eng = r.get("engine")
            eng_txt = "-" if not eng else f"1 query: {_engine(eng['single'])}; batch: {_engine(eng['batch'])} ({eng['source']})"
            idx = r["index"] + (f" (m={r['hnsw_m']}, efc={r['hnsw_ef_construction']}, ef={r['hnsw_ef_search']})" if r["index"] == "hnsw" else "")
            lines.append(
                f"| {s['n']:,} | {s['store']} | {'-' if s['enroll_per_s'] is None else format(s['enroll_per_s'], ',.0f')} | {idx} | {r.get('search', 'memory')} | {r['first_query_s']:.1f} | "
                f"{1e3 * r['identify_s']['p50']:.2f} | {1e3 * r['identify_s']['p99']:.2f} | {r['recall_at_1']:.3f} | {r['recall_at_10']:.3f} | "
                f"{r.get('rss_before_open_mb', float('nan')):,.0f} | {r.get('rss_peak_mb', float('nan')):,.0f} | {eng_txt} |"
            )
    b = d.get("bulk")
    if b:
        lines += ["", f"Bulk enrollment of an image folder ({b['identities']:,} identities x {b['images'] // b['identities']} "
                  f"synthetic 105x105 PNGs, model `{b['model']}`), wall time including the workers' start-up:", "",
                  "| workers | seconds | images/s | first commit after s (start-up) | images/s after the first commit |", "|---|---|---|---|---|"]
        for r in b["rows"]:
            label = "0 (one process, one transaction)" if r["workers"] == 0 else str(r["workers"])
            steady = f"{r['first_commit_s']:.1f} | {r['steady_images_per_s']:.0f}" if "steady_images_per_s" in r else "- | -"
            lines.append(f"| {label} | {r['seconds']:.1f} | {r['images_per_s']:.0f} | {steady} |")
    return lines


def _engine(e: dict[str, Any]) -> str:
    return f"{e['matmul']} matmul + {e['topk']} top-k, chunk {e['chunk_elements']:,}"


def engine_ratios(sizes: Sequence[int], *, dim: int = 128, n_queries: int = 100, repeats: int = 15) -> list[dict[str, Any]]:
    """Exact search per engine at each size, all in this run (so their ratios compare on a
    shared machine): :func:`bench.search_bench.exact_engines` on clustered data."""
    from bench.search_bench import exact_engines

    out = []
    for n in sizes:
        clusters = max(10, n // 10)
        matrix = clustered_embeddings(n, dim, clusters, seed=1)
        queries = clustered_embeddings(n_queries, dim, clusters, seed=2)
        out.append({"n": n, **exact_engines(matrix, queries, repeats=repeats, batch_sizes=(1, n_queries))})
        del matrix
    return out


def engine_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["Per call, median (min) over round-robin repeats (the min is the least disturbed by other jobs):", "",
             "| embeddings | queries | twinshot exact (measured engine) | forced numpy engine | forced torch engine | numpy matmul + argpartition | bare matmul (faster of numpy, torch) | twinshot / bare matmul |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for b, row in r.items():
            if b in ("n", "engine"):
                continue
            keys = ("twinshot_exact", "twinshot_exact_numpy", "twinshot_exact_torch", "numpy_argpartition", "bare_matmul")
            med = {k: 1e3 * row[k]["median"] for k in keys}
            low = {k: 1e3 * row[k]["min"] for k in keys}
            cells = " | ".join(f"{med[k]:.2f} ({low[k]:.2f}) ms" for k in keys)
            lines.append(f"| {r['n']:,} | {b} | {cells} | {med['twinshot_exact'] / med['bare_matmul']:.2f} ({low['twinshot_exact'] / low['bare_matmul']:.2f}) |")
    plans = "; ".join(f"{r['n']:,}: 1 query {_engine(r['engine']['single'])}, batches {_engine(r['engine']['batch'])}" for r in rows)
    return lines + ["", f"Engine measured on this machine: {plans}."]


def fragment(result: dict[str, Any], engines: list[dict[str, Any]] | None, command: str) -> str:
    """A ``docs/benchmarks_*.md`` fragment (``bench/run.py`` includes it in the report)."""
    from bench.run import machine

    m = result.get("machine") or machine()
    lines = [
        "### Scale: exact-search engines, stores at 100k/1M, bulk enrollment",
        "",
        f"`{command}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {m['cpu']}, {m['cores']} cores, "
        f"torch threads {result['threads']}; load average at start {result.get('load_start')}, at end {result.get('load_end')}. "
        "**The machine was shared with other jobs during this run**: absolute times are inflated and noisy; compare "
        "the ratios within one table (measured in the same run).",
        "",
    ]
    if engines:
        lines += engine_lines(engines) + [""]
    lines += markdown_lines(result) + [""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m bench.store_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--store-uri", default=None, help="the gallery to create (default: a SQLite file in --workdir)")
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated embedding counts")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--hnsw-up-to", type=int, default=100_000, help="also measure HNSW up to this size")
    ap.add_argument("--bulk", default="500x2", help="IDENTITIESxIMAGES for the bulk enrollment rows ('' to skip)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    ap.add_argument("--engines", default="", help="also time exact search per engine at these sizes (comma-separated)")
    ap.add_argument("--fragment", type=Path, default=None, help="write a docs/benchmarks_*.md fragment here")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--indexes", default="", help="comma-separated index kinds (default: exact, and hnsw up to --hnsw-up-to)")
    ap.add_argument("--reuse", action="store_true", help="search a --store-uri gallery that already holds the rows, without enrolling")
    ap.add_argument("--search", default="memory", help="comma-separated search modes: memory (rows loaded), database (the store searches)")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(x) for x in args.sizes.split(",") if x]
    bulk = tuple(int(x) for x in args.bulk.split("x")) if args.bulk else None
    load_start = [round(x, 2) for x in os.getloadavg()]
    engines = engine_ratios([int(x) for x in args.engines.split(",") if x]) if args.engines else None
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        result = run(sizes, workdir, store_uri=args.store_uri, n_queries=args.queries, hnsw_up_to=args.hnsw_up_to, bulk=bulk,  # type: ignore[arg-type]
                     searches=[x for x in args.search.split(",") if x], indexes=[x for x in args.indexes.split(",") if x] or None,
                     reuse=args.reuse)
    result["load_start"], result["load_end"] = load_start, [round(x, 2) for x in os.getloadavg()]
    result["engines"] = engines
    print("\n".join(markdown_lines(result)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.fragment:
        command = "python -m bench.store_bench " + " ".join(argv if argv is not None else sys.argv[1:])
        args.fragment.write_text(fragment(result, engines, command))
    return result


if __name__ == "__main__":
    main()
