"""Data-parallel training: 2 gloo processes on this machine (torch.multiprocessing spawn,
1 thread each) against one process, on the tiny synthetic set.

One spawn runs every distributed job (tests/training/_ddp_worker.py); the tests read what
it wrote. Rank 1 is given its own (absent) run directories: it must write nothing.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.training._ddp_worker import LossRecorder
from tests.training._helpers import tiny_config
from twinshot.errors import ConfigError
from twinshot.training import train
from twinshot.training.collectives import shard_sizes
from twinshot.training.distributed import DistributedConfig
from twinshot.training.metrics import read_csv

#: float32 agreement of 1 vs 2 processes: the shards' gradients are summed in another order
#: and BatchNorm's statistics are reduced over ranks, so the losses differ by rounding only.
LOSS_RTOL = 1e-4


def _no_dropout(folder: Path) -> Any:
    return tiny_config(folder, **{"model.encoder_params": {"widths": [8, 8], "embedding_dim": 16, "dropout": 0.0}, "run.precision": "fp32"})


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> dict[str, Any]:
    import torch.multiprocessing as mp

    from tests.training._ddp_worker import worker

    root = tmp_path_factory.mktemp("ddp")
    jobs = [
        {"label": "eq", "name": "eq", "config": _no_dropout(tiny_data)},
        {"label": "full", "name": "full", "config": tiny_config(tiny_data)},  # dropout 0.2: per-rank masks
        {"label": "part", "name": "part", "config": tiny_config(tiny_data), "interrupt_at": 4},
        {"label": "resume", "name": "part", "resume": True},
        {"label": "missing", "name": "missing", "resume": True},
        {"label": "agree", "name": "agree", "config": _no_dropout(tiny_data), "stop_rank": 1, "stop_at": 2},
    ]
    mp.spawn(worker, args=(2, str(root), jobs), nprocs=2, join=True)
    outs = [torch.load(root / f"out{r}.pt", weights_only=False) for r in range(2)]
    return {"root": root, "rank0": outs[0], "rank1": outs[1]}


def test_two_processes_match_one_on_the_same_global_batch(ddp_runs: dict[str, Any], tiny_data: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    recorder = LossRecorder()
    single = train(_no_dropout(tiny_data), tmp_path / "single", progress=False, callbacks=[recorder])
    assert single.steps == 6
    ddp = ddp_runs["rank0"]["eq"]["losses"]
    assert ddp_runs["rank1"]["eq"]["losses"] == ddp  # every rank computes the global batch's loss
    assert len(ddp) == 6 and all(math.isfinite(x) for x in ddp)
    for step, (a, b) in enumerate(zip(recorder.losses, ddp), 1):
        assert b == pytest.approx(a, rel=LOSS_RTOL, abs=1e-6), f"step {step}: 1 process {a}, 2 processes {b}"
    # the steps change the loss: the equality is not that of an untrained model
    assert max(ddp) - min(ddp) > 1e-2


def test_only_rank_0_writes(ddp_runs: dict[str, Any]) -> None:
    root = ddp_runs["root"]
    assert not (root / "rank1").exists()
    run = root / "full"
    for name in ("config.toml", "metrics.csv", "epochs.csv", "summary.json", "best/model.safetensors", "last/trainer_state.pt"):
        assert (run / name).is_file(), name
    assert len(read_csv(run / "epochs.csv")) == 2
    assert len(read_csv(run / "metrics.csv")) == 6
    import json

    extra = json.loads((run / "best" / "model.json").read_text())
    assert "world_size" in json.dumps(extra)


def test_resume_under_ddp_continues_exactly(ddp_runs: dict[str, Any]) -> None:
    from safetensors.torch import load_file

    root = ddp_runs["root"]
    r0 = ddp_runs["rank0"]
    assert r0["part"]["stopped"] == "interrupted" and r0["part"]["steps"] == 4
    assert r0["resume"]["stopped"] == "completed" and r0["resume"]["steps"] == 6
    full = load_file(str(root / "full" / "last" / "model.safetensors"))
    resumed = load_file(str(root / "part" / "last" / "model.safetensors"))
    assert full.keys() == resumed.keys()
    for k in full:
        assert torch.equal(full[k], resumed[k]), k
    losses = [row["loss"] for row in read_csv(root / "full" / "metrics.csv")]
    assert [row["loss"] for row in read_csv(root / "part" / "metrics.csv")] == losses
    assert r0["resume"]["losses"][0] is None  # step 5: the recorder does not know step 4's sum
    assert r0["resume"]["losses"][1:] == r0["full"]["losses"][5:]


def test_rank_0_errors_reach_every_rank(ddp_runs: dict[str, Any]) -> None:
    for rank in ("rank0", "rank1"):
        error = ddp_runs[rank]["missing"]["error"]
        assert "not a training run" in error and "missing" in error


def test_a_stop_on_one_rank_stops_all_at_the_same_step(ddp_runs: dict[str, Any]) -> None:
    """Ctrl-C (or SIGTERM) seen by rank 1 only: both ranks stop after the same step and
    rank 0 writes a resumable last/."""
    for rank in ("rank0", "rank1"):
        assert ddp_runs[rank]["agree"]["stopped"] == "interrupted"
        assert ddp_runs[rank]["agree"]["steps"] == 2
    state = torch.load(ddp_runs["root"] / "agree" / "last" / "trainer_state.pt", weights_only=True)
    assert state["state"]["step"] == 2 and state["distributed"]["world_size"] == 2


def test_shards_and_config() -> None:
    assert shard_sizes(7, 2) == [4, 3]
    assert shard_sizes(2, 2) == [1, 1]
    with pytest.raises(ConfigError, match="cannot be split over 3 processes"):
        shard_sizes(2, 3)
    assert DistributedConfig.from_torchrun({}) is None
    cfg = DistributedConfig.from_torchrun({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert cfg is not None and (cfg.rank, cfg.world_size, cfg.local_rank, cfg.local_world_size) == (1, 4, 1, 2)
    with pytest.raises(ConfigError, match="rank 4"):
        DistributedConfig(rank=4, world_size=2)


@pytest.mark.slow
def test_torchrun_cli_two_processes(tiny_data: Path, tmp_path: Path) -> None:
    """``torchrun --nproc_per_node=2 -m twinshot train``: one summary, printed by rank 0."""
    import json

    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        "-m", "twinshot", "train", "--data", str(tiny_data), "--out", str(out), "--json", "--threads", "1",
        "--epochs", "1", "--steps-per-epoch", "2",
        "--set", 'model.encoder_params={widths=[8,8],embedding_dim=16}', "--set", "model.preprocessing.size=[16,16]",
        "--set", "data.val=1", "--set", "sampler.n_way=4", "--set", "sampler.n_query=2",
        "--set", "validation.n_way=4", "--set", "validation.episodes=10", "--set", "validation.calibration_pairs=60",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, proc.stdout
    summary = json.loads(lines[0])
    assert summary["steps"] == 2 and summary["stopped"] == "completed"
    model = json.loads((out / "best" / "model.json").read_text())
    assert '"world_size": 2' in json.dumps(model)
