"""Runs inside each process spawned by test_distributed.py (a gloo group on this machine)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


class LossRecorder:
    """Records the loss of every step at full precision (from the epoch's running sum)."""

    def __init__(self) -> None:
        self.losses: list[float | None] = []
        self._last: tuple[int, float] = (-1, 0.0)

    def on_step_end(self, trainer: Any) -> None:
        s = trainer.state
        if s.step_in_epoch == 1:
            self.losses.append(s.epoch_loss_sum)
        elif self._last[0] == s.step - 1:
            self.losses.append(s.epoch_loss_sum - self._last[1])
        else:  # the first step after resuming mid-epoch: the previous sum is unknown
            self.losses.append(None)
        self._last = (s.step, s.epoch_loss_sum)


class InterruptAt:
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer: Any) -> None:
        if trainer.state.step == self.step:
            raise KeyboardInterrupt


class RequestStopAt:
    """Asks this rank alone to stop (as Ctrl-C on one process would) at ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer: Any) -> None:
        if trainer.state.step == self.step:
            trainer._interrupt_requested = True


def run_dir(root: Path, name: str, rank: int) -> Path:
    """Rank 0 writes under root/name; other ranks are given root/rankR/name, which must
    stay absent (only rank 0 writes)."""
    return root / name if rank == 0 else root / f"rank{rank}" / name


def worker(rank: int, world_size: int, root: str, jobs: list[dict[str, Any]]) -> None:
    import torch.distributed as dist

    from twinshot.errors import TwinshotError
    from twinshot.training import train
    from twinshot.training.distributed import DistributedConfig, distributed_session

    torch.set_num_threads(1)
    root_path = Path(root)
    config = DistributedConfig(rank=rank, world_size=world_size, backend="gloo",
                               init_method=f"file://{root_path / 'rendezvous'}", timeout_s=120)
    out: dict[str, Any] = {}
    with distributed_session(config):
        for job in jobs:
            recorder = LossRecorder()
            callbacks: list[Any] = [recorder]
            if job.get("interrupt_at"):
                callbacks.append(InterruptAt(job["interrupt_at"]))
            if job.get("stop_rank") == rank:
                callbacks.append(RequestStopAt(job["stop_at"]))
            try:
                result = train(
                    job.get("config"), run_dir(root_path, job["name"], rank), resume=job.get("resume", False),
                    progress=False, callbacks=callbacks,
                )
                out[job["label"]] = {"losses": recorder.losses, "stopped": result.stopped, "steps": result.steps}
            except TwinshotError as exc:
                out[job["label"]] = {"error": str(exc)}
        dist.barrier()
    torch.save(out, root_path / f"out{rank}.pt")
