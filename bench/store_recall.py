"""Recall of the database stores' approximate indexes against exact search, on clustered
synthetic 128-d embeddings (correctness numbers, not speed: timing belongs to ``make bench``).

    python -m bench.store_recall --n 20000 --queries 200

Starts a throwaway PostgreSQL 16 + pgvector (``pgserver``) in a temporary folder, writes
``n`` embeddings (``n / 2`` identities of 2) through :class:`PostgresStore`, and reports:

* ``db_exact_agreement``: the fraction of queries whose top-10 image ids from the
  database's exact search (``ORDER BY embedding <=> q``, index scans off) equal numpy's
  exact cosine top-10 as sets (ties aside, 1.0);
* ``recall@10`` of pgvector's HNSW index (m 16, ef_construction 64) for several
  ``hnsw.ef_search`` values.

With ``--milvus`` the same for a Milvus Lite file (its own index; Lite drops build
parameters, so this checks the client contract, it says nothing of a Milvus cluster).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def clustered(n: int, dim: int, clusters: int, seed: int, noise: float = 0.3) -> np.ndarray:
    centres = np.random.default_rng(0).standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    which = rng.integers(0, clusters, n)
    return (centres[which] + noise / np.sqrt(dim) * rng.standard_normal((n, dim))).astype(np.float32)


def exact_top(vectors: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    qq = q / np.linalg.norm(q, axis=1, keepdims=True)
    s = qq @ v.T
    return ids[np.argsort(-s, axis=1, kind="stable")[:, :k]]


def recall(exact: np.ndarray, approx: np.ndarray) -> float:
    return float(np.mean([np.isin(e, a).mean() for e, a in zip(exact, approx)]))


def _fill(store, vectors: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    from twinshot.gallery.store import NewIdentity

    items = [NewIdentity(f"id{i:07d}", vectors[2 * i : 2 * i + 2]) for i in range(len(vectors) // 2)]
    ids = []
    for a in range(0, len(items), 5000):
        ids.extend(store.write_identities(items[a : a + 5000]).image_ids)
    return np.concatenate(ids)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--milvus", action="store_true")
    args = p.parse_args()
    import pgserver

    from twinshot.gallery.stores import create_store

    vectors = clustered(args.n, args.dim, clusters=max(2, args.n // 50), seed=1)
    q = clustered(args.queries, args.dim, clusters=max(2, args.n // 50), seed=2)
    meta = {"dim": str(args.dim), "fingerprint": "bench", "model_spec": json.dumps({"head": "cosine"})}
    out: dict[str, object] = {"n": args.n, "dim": args.dim, "queries": args.queries}
    with tempfile.TemporaryDirectory() as tmp:
        server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        try:
            head, _, query = server.get_uri().partition("?")
            store = create_store(f"{head}/recall?{query}", meta)
            ids = _fill(store, vectors)
            exact = exact_top(vectors, ids, q, 10)
            db_exact = store.nearest(q, 10, "cosine", exact=True)
            out["db_exact_agreement"] = float(np.mean([set(a) == set(b) for a, b in zip(exact, db_exact)]))
            store.ensure_hnsw("cosine", m=16, ef_construction=64)
            out["pgvector_hnsw_recall@10"] = {ef: round(recall(exact, store.nearest(q, 10, "cosine", exact=False, ef_search=ef)), 4) for ef in (10, 40, 100, 200)}
            store.close()
        finally:
            server.cleanup()
        if args.milvus:
            mstore = create_store(f"milvus-lite://{tmp}/m.db/recall", meta)
            ids = _fill(mstore, vectors)
            exact = exact_top(vectors, ids, q, 10)
            out["milvus_lite_recall@10"] = round(recall(exact, mstore.nearest(q, 10)), 4)
            mstore.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
