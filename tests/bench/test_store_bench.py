"""``bench/store_bench.py``: its brute-force reference, and one small store measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.store_bench import brute_force_top, bench_store, markdown_lines


def test_brute_force_top_breaks_ties_by_row() -> None:
    g = np.random.default_rng(0).standard_normal((250_000, 4)).astype(np.float32)
    g[[3, 150_000, 7]] = g[10]  # the same vector in two chunks of the brute force
    got = brute_force_top(g, g[10:11], 4)
    assert got[0].tolist() == [3, 7, 10, 150_000]


def test_exact_identify_has_recall_one(tmp_path: Path) -> None:
    result = bench_store(3000, tmp_path, dim=16, n_queries=5, batch=1000, indexes=("exact",))
    (row,) = result["rows"]
    assert result["enroll_per_s"] > 0 and row["recall_at_1"] == 1.0 and row["recall_at_10"] == 1.0
    assert row["identify_s"]["p99"] >= row["identify_s"]["p50"] > 0
    assert not list(tmp_path.glob("store_*"))  # the SQLite file is removed
    text = "\n".join(markdown_lines({"store_uri": "sqlite file", "sizes": [result]}))
    assert "| 3,000 | sqlite |" in text
