"""Measurements of the data pipeline (not a test): load time and memory, sampler and
augmentation speed. Run from the repository root:

    .venv/bin/python -m tests.data.bench_data [--repeat 3] [--skip-load]

Each load runs in a fresh process so that peak RSS is that load's own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OMNIGLOT = ROOT.parent / "shared" / "datasets" / "omniglot"

_LOAD = r"""
import json, os, resource, sys, tempfile, time
from twinshot.data import Preprocessing, load_dataset
src, size, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
p = Preprocessing(size=(size, size), invert=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
with tempfile.TemporaryDirectory() as cache:
    t = time.perf_counter(); ds = load_dataset(src, p, workers=workers); decode = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load_dataset(src, p, workers=workers, cache_dir=cache)
    t = time.perf_counter(); load_dataset(src, p, workers=workers, cache_dir=cache); cached = time.perf_counter() - t
print(json.dumps({"n": len(ds), "decode_s": decode, "cached_s": cached, "tensor_mib": ds.images.numel() / 2**20,
                  "rss_before_mib": before, "peak_rss_mib": peak}))
"""


def bench_load(repeat: int) -> None:
    for name in ("images_background_small1.zip", "images_background.zip"):
        for size in (105, 28):
            for workers in (1, 2):
                runs = []
                for _ in range(repeat):
                    out = subprocess.run(
                        [sys.executable, "-c", _LOAD, str(OMNIGLOT / name), str(size), str(workers)],
                        capture_output=True, text=True, check=True,
                    )
                    runs.append(json.loads(out.stdout))
                best = min(runs, key=lambda r: r["decode_s"])
                print(
                    f"{name} {size}x{size} workers={workers}: N={best['n']} "
                    f"decode {best['decode_s']:.2f}s (best of {repeat}), cached {best['cached_s']:.3f}s, "
                    f"tensor {best['tensor_mib']:.1f} MiB, peak RSS {best['peak_rss_mib']:.0f} MiB "
                    f"(after imports {best['rss_before_mib']:.0f} MiB)"
                )


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_samplers(repeat: int) -> None:
    import torch

    from twinshot.data import ClassBalancedSampler, EpisodeSampler, PairSampler, TripletSampler

    labels = torch.arange(964).repeat_interleave(20)  # Omniglot background
    groups = torch.arange(964) * 30 // 964
    cases = {
        "10k episodes 20-way 1-shot 5-query": lambda: EpisodeSampler(labels, 20, 1, 5, 10_000),
        "10k within-alphabet episodes 20-way 1-shot 5-query": lambda: EpisodeSampler(
            labels, 20, 1, 5, 10_000, class_groups=groups, within_group=True
        ),
        "1k pair batches of 128": lambda: PairSampler(labels, 128, 1000),
        "1k triplet batches of 128": lambda: TripletSampler(labels, 128, 1000),
        "1k class-balanced batches 32x4": lambda: ClassBalancedSampler(labels, 32, 4, 1000),
    }
    for name, make in cases.items():
        print(f"{name}: {_best(lambda: sum(1 for _ in make()), repeat):.3f}s (best of {repeat})")


def bench_augment(repeat: int) -> None:
    import kornia.augmentation as K
    import torch

    from twinshot.data import KochAffine

    g = torch.Generator().manual_seed(0)
    for size in (105, 28):
        x = torch.rand(128, 1, size, size)
        ours = KochAffine()
        theirs = K.RandomAffine(
            degrees=10.0, translate=(2 / size, 2 / size), scale=(0.8, 1.2, 0.8, 1.2),
            shear=(-16.7, 16.7, -16.7, 16.7), p=1.0,
        )
        for name, fn in [("KochAffine (torch)", lambda: ours(x, g)), ("kornia RandomAffine", lambda: theirs(x))]:
            fn()
            t = _best(lambda: [fn() for _ in range(20)], repeat) / 20
            print(f"{name} {size}x{size}, batch 128, {torch.get_num_threads()} threads: {t * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()
    if not args.skip_load:
        bench_load(args.repeat)
    bench_samplers(args.repeat)
    bench_augment(args.repeat)


if __name__ == "__main__":
    main()
