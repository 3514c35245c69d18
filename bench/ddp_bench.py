"""Data-parallel training throughput: the ``omniglot`` preset's step on 1 process vs 2
processes (DDP over gloo) on this machine.

    python -m bench.ddp_bench                  # 60 steps per run, 2 repeats
    python -m bench.ddp_bench --steps 10 --repeats 1 --tiny

Each run is ``twinshot.training.train`` in fresh processes (``torch.multiprocessing``
spawn) for ``--steps`` steps of the preset's global batch (30 characters x 4 drawings,
28x28, Conv-4 of 96 channels, batch-hard triplets, Koch's affine distortions), and the
figure is global images per second over the steps after ``--warmup`` (time inside
training steps as the trainer counts it: sampling, augmentation, forward, backward,
gradient all-reduce and the optimiser; no validation). Settings compared:

* ``1 process, T threads``: the plain trainer with all the cores;
* ``1 process, 1 thread``: the same with one thread (what one rank of a 2-process run has);
* ``2 processes (DDP, gloo), 1 thread each``: ``torchrun --nproc_per_node=2`` on one machine.

On a machine whose cores are already busy (this one is shared), processes compete with
the other work: the load average is recorded with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
DATA = "../shared/datasets/omniglot/images_background.zip"
#: The smoke test's data (``--tiny``).
TINY_DATA = "../shared/datasets/omniglot/images_background_small1.zip"


class _Clock:
    """Images and training seconds at the end of the warm-up and of the run."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: tuple[int, float] | None = None
        self.end: tuple[int, float] | None = None

    def on_step_end(self, trainer: Any) -> None:
        s = trainer.state
        if s.step == self.warmup:
            self.start = (s.images, s.train_seconds)
        self.end = (s.images, s.train_seconds)


def _overrides(steps: int, tiny: bool, cache_dir: str, data: str) -> list[str]:
    out = [
        f"data.sources=[{data!r}]".replace("'", '"'),
        f'data.cache_dir="{cache_dir}"',
        "data.val=0",  # no validation: the figure is the training step
        "run.epochs=1",
        f"run.steps_per_epoch={steps}",
        "validation.calibration_pairs=20",
    ]
    if tiny:
        out += ["model.encoder_params.widths=[8,8]", "sampler.n_classes=6"]
    return out


def _worker(rank: int, world: int, root: str, overrides: list[str], threads: int, warmup: int, distributed: bool) -> None:
    import torch

    from twinshot.training import load_config, train
    from twinshot.training.distributed import DistributedConfig, distributed_session

    torch.set_num_threads(threads)
    config = load_config(preset="omniglot", overrides=overrides + [f"run.threads={threads}"])
    clock = _Clock(warmup)
    dist_config = (
        DistributedConfig(rank=rank, world_size=world, backend="gloo", init_method=f"file://{root}/rendezvous")
        if distributed else None
    )
    with distributed_session(dist_config):
        result = train(config, Path(root) / "run", progress=False, callbacks=[clock])
    if rank == 0:
        assert clock.start is not None and clock.end is not None
        images = clock.end[0] - clock.start[0]
        seconds = clock.end[1] - clock.start[1]
        torch.save({"images": images, "seconds": seconds, "steps": result.steps}, Path(root) / "result.pt")


def _warm_cache(data: str, cache_dir: str) -> None:
    """Decode the zip once into ``cache_dir``, so each run's processes load it in a moment."""
    from twinshot.training import load_config, model_spec
    from twinshot.training.data import load_sources

    spec = model_spec(load_config(preset="omniglot"))
    load_sources([data], spec.preprocessing, cache_dir=cache_dir)


def measure(world: int, threads: int, *, steps: int, warmup: int, tiny: bool, cache_dir: str, data: str) -> dict[str, Any]:
    """One run: global images/s after the warm-up."""
    import torch
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        args = (world, tmp, _overrides(steps, tiny, cache_dir, data), threads, warmup, world > 1)
        t = time.perf_counter()
        mp.spawn(_worker, args=args, nprocs=world, join=True)
        wall = time.perf_counter() - t
        r = torch.load(Path(tmp) / "result.pt")
    return {"images_per_s": r["images"] / r["seconds"], "seconds": r["seconds"], "images": r["images"], "wall_s": wall}


def run(*, steps: int = 60, warmup: int = 10, repeats: int = 2, tiny: bool = False, data: str = DATA) -> dict[str, Any]:
    """Every setting, ``repeats`` times, interleaved (so a change of load hits all alike)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    settings = [
        {"name": f"1 process, {cores} threads", "world": 1, "threads": cores},
        {"name": "1 process, 1 thread", "world": 1, "threads": 1},
        {"name": "2 processes (DDP, gloo), 1 thread each", "world": 2, "threads": 1},
    ]
    if cores == 1:
        settings = settings[1:]
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory() as cache:
        _warm_cache(data, cache)
        load_before = os.getloadavg()
        rows: dict[str, list[dict[str, Any]]] = {s["name"]: [] for s in settings}
        for _ in range(repeats):
            for s in settings:
                rows[s["name"]].append(measure(s["world"], s["threads"], steps=steps, warmup=warmup, tiny=tiny, cache_dir=cache, data=data))
        load_after = os.getloadavg()
    out = []
    for s in settings:
        ips = [r["images_per_s"] for r in rows[s["name"]]]
        out.append({**s, "images_per_s": ips, "median": statistics.median(ips)})
    base = out[0]["median"]
    for row in out:
        row["vs_first"] = row["median"] / base if base > 0 else float("nan")
    return {
        "steps": steps, "warmup": warmup, "repeats": repeats, "cores": cores, "tiny": tiny,
        "images_per_step": 6 * 4 if tiny else 120,
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_after],
        "rows": out,
    }


def markdown_lines(d: dict[str, Any]) -> list[str]:
    """The section of ``docs/benchmarks.md``."""
    lines = [
        f"The `omniglot` preset's training step ({d['images_per_step']} images per global batch; no validation) for "
        f"{d['steps']} steps per run, images/s over the steps after {d['warmup']} warm-up steps, {d['repeats']} runs per "
        f"setting, interleaved (`python -m bench.ddp_bench`). Load average (1, 5, 15 min) before: {d['load_before']}, "
        f"after: {d['load_after']} on {d['cores']} cores shared with other work. With 2 processes each rank embeds half "
        f"the global batch, every rank augments the whole batch and computes the loss on the gathered embeddings, "
        f"BatchNorm statistics and gradients are all-reduced over gloo (docs/training.md).",
        "",
        "| setting | images/s (median; runs) | vs first row |",
        "|---|---|---|",
    ]
    for r in d["rows"]:
        runs = ", ".join(f"{x:,.0f}" for x in r["images_per_s"])
        lines.append(f"| {r['name']} | {r['median']:,.0f} ({runs}) | {r['vs_first']:.2f}x |")
    lines += [
        "",
        "The point of 2 processes on one 2-core machine is correctness (the same steps as one process, "
        "tests/training/test_distributed.py), not speed: the two ranks share the cores one process already uses, "
        "and add the gathers and all-reduces. Data-parallel training pays off with one process per GPU or per "
        "machine (docs/training.md).",
        "",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m bench.ddp_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="a tiny model (seconds; for the smoke test)")
    ap.add_argument("--data", default=None, help=f"the Omniglot zip (default {DATA}; with --tiny {TINY_DATA})")
    args = ap.parse_args(argv)
    data = args.data or (TINY_DATA if args.tiny else DATA)
    d = run(steps=args.steps, warmup=args.warmup, repeats=args.repeats, tiny=args.tiny, data=data)
    print("\n".join(markdown_lines(d)))
    return d


if __name__ == "__main__":
    main()
    sys.exit(0)
