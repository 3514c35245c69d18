"""``make bench`` (``python -m bench.run``): the tiny mode runs every section and writes
the report; time to accuracy is read from a run's ``epochs.csv``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("faiss")


def test_tiny_run_writes_the_report(tmp_path: Path, omniglot_dir: Path) -> None:
    from bench.run import SECTIONS, main

    report = main(["--tiny", "--out-dir", str(tmp_path), "--accuracy-budget", "0"])
    sections = report["sections"]
    failed = {k: v["error"] for k, v in sections.items() if isinstance(v, dict) and "error" in v}
    assert not failed, failed
    assert set(sections) == set(SECTIONS)
    t = sections["training"]
    assert t["twinshot"]["images_per_s"]["median"] > 0 and t["reference"]["images_per_s"]["median"] > 0
    assert t["flops"]["flops_per_image"] > 0 and t["peak"]["flops_per_s"]["median"] > 0
    assert {r["engine"] for r in sections["embedding"]["rows"]} >= {"eager"}
    assert sections["gallery"]["sizes"][0]["hnsw"][0]["recall_at_10"] > 0.5
    assert sections["enrollment"]["rows"][0]["identities_per_s"]["median"] > 0
    assert all(r["median"] > 0 for r in sections["ddp"]["rows"])
    assert "skipped" in sections["faces"] or sections["faces"]["faces_per_s"] > 0
    assert sections["stores"]["sizes"][0]["rows"][0]["recall_at_10"] == 1.0
    assert [r["workers"] for r in sections["stores"]["bulk"]["rows"]] == [0, 1, 2]
    md = (tmp_path / "benchmarks.md").read_text()
    for heading in ("## Goals", "## 1. Training throughput", "## 2. Time to accuracy", "## 3. Embedding throughput",
                    "## 4. Gallery search", "## 5. Enrollment throughput", "## 6. Data-parallel training (DDP)",
                    "## 7. Faces", "## 8. Gallery stores at scale", "## Other measurements"):
        assert heading in md
    assert "met**" in md and "AMD" in md or "Machine" in md
    data = json.loads((tmp_path / "benchmarks.json").read_text())
    assert data["mode"] == "tiny" and data["machine"]["versions"]["torch"]
    (tmp_path / "benchmarks.md").unlink()
    main(["--render", "--out-dir", str(tmp_path)])  # the report again from the JSON alone
    assert (tmp_path / "benchmarks.md").read_text() == md


def test_skip_is_checked_and_honoured(tmp_path: Path) -> None:
    from bench.run import main, parse_args

    with pytest.raises(SystemExit):
        parse_args(["--skip", "trainning"])
    report = main(["--tiny", "--out-dir", str(tmp_path), "--skip", "training,accuracy,embedding,gallery,enrollment,ddp,faces,stores"])
    assert all(v is None for v in report["sections"].values())
    assert "Skipped (`--skip`)." in (tmp_path / "benchmarks.md").read_text()


def test_time_to_accuracy_is_read_from_epochs_csv(tmp_path: Path) -> None:
    from bench.training_bench import find_preset_run, read_time_to_accuracy

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text(
        '[data]\nsources = ["../shared/datasets/omniglot/images_background.zip"]\n'
        "[validation]\nn_way = 20\nn_shot = 1\nwithin_group = true\n"
    )
    (run / "epochs.csv").write_text(
        "epoch,step,train_loss,val_accuracy,val_ci95,val_error,images_per_s,elapsed_s,best\n"
        "1,200,0.9,0.80,0.01,0.20,400,60,1\n2,400,0.5,0.93,0.01,0.07,400,150,1\n3,600,0.4,0.95,0.01,0.05,400,240,1\n"
    )
    assert find_preset_run([tmp_path / "missing", run]) == run
    out = read_time_to_accuracy(run)
    assert out["reached"] and out["epoch"] == 2 and out["minutes"] == pytest.approx(2.5)
    assert read_time_to_accuracy(run, target_error=0.01)["reached"] is False


@pytest.mark.parametrize("variant", ["fp32", "bf16cl"])
def test_precision_bench_runs(variant: str) -> None:
    from bench.precision_bench import images_per_second

    assert images_per_second(variant, steps=1, warmup=1) > 0
