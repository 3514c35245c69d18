"""The service load benchmark's tiny mode runs end to end and reports its figures."""

from __future__ import annotations

import json
from pathlib import Path


def test_tiny_load_benchmark(tmp_path: Path, capsys) -> None:
    from bench.service_load import main

    out = main(["--tiny", "--json", str(tmp_path / "load.json")])
    r = out["results"]
    assert r["requests"] > 0 and r["statuses"] == {"200": r["requests"]} and not r["client_errors"]
    assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"] <= r["latency_ms"]["max"]
    assert r["throughput_rps"] > 0 and r["server_batches"] >= 1
    assert out["gallery"]["identities"] == 300 and out["config"]["clients"] == 4
    assert json.loads((tmp_path / "load.json").read_text())["results"]["requests"] == r["requests"]
