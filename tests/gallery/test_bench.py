"""The gallery benchmark's tiny mode runs and reports every figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_tiny_benchmark_runs(tmp_path: Path, capsys) -> None:
    pytest.importorskip("faiss")
    from bench.gallery_bench import main

    out = main(["--tiny", "--json", str(tmp_path / "bench.json")])
    (r,) = out["results"]
    for key in ["enroll_s", "open_s", "identify_q1_s", "identify_q10_s", "matrix_bytes_per_embedding",
                "twinshot_exact_q1_s", "numpy_argpartition_q1_s", "faiss_flat_q1_s", "hnsw_ef256_recall_at_10",
                "hnsw_ef256_recall_at_1", "hnsw_build_and_store_s"]:
        assert key in r and r[key] >= 0, key
    assert r["n"] == 2000 and r["matrix_bytes_per_embedding"] == 16 * 4
    assert r["hnsw_ef256_recall_at_10"] >= 0.9
    assert json.loads((tmp_path / "bench.json").read_text())["results"][0]["n"] == 2000
