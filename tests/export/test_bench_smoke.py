"""The embedding benchmark's tiny mode runs and reports every figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_summary_of_repeats() -> None:
    from bench.embedding_bench import summary

    s = summary([4.0, 1.0, 3.0, 2.0, 5.0])
    assert s == {"median": 3.0, "p25": 2.0, "p75": 4.0, "min": 1.0, "max": 5.0, "repeats": 5}
    assert summary([7.0])["median"] == 7.0


def test_tiny_benchmark_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    from bench.embedding_bench import main

    report = main(["--tiny", "--json", str(tmp_path / "bench.json")])
    rows = {(r["engine"], r["batch_size"]): r for r in report["embedding"]}
    assert set(rows) == {(e, b) for e in ("eager", "onnxruntime") for b in (1, 4)}
    for r in rows.values():
        s = r["images_per_s"]
        assert 0 < s["min"] <= s["p25"] <= s["median"] <= s["p75"] <= s["max"] and s["repeats"] == 2
        assert r["max_abs_diff"] <= 1e-4
    assert set(report["fastest_engine"]) == {"1", "4"}
    modes = {r["mode"]: r for r in report["enrollment"]}
    assert set(modes) == {"folder", "one_by_one"} and modes["folder"]["identities"] == 12
    assert all(r["identities_per_s"]["median"] > 0 for r in modes.values())
    assert report["machine"]["threads"] == 1 and "torch" in report["machine"]["versions"]
    assert report["command"].startswith("python -m bench.embedding_bench --tiny")
    assert json.loads((tmp_path / "bench.json").read_text())["embedding"] == report["embedding"]
    assert "images/s" in capsys.readouterr().out
