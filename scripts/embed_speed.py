"""Embedding throughput of several models (images/s, one thread, batches of ``--batch``),
interleaved ``--reps`` times so that the machine's load falls on all alike; prints the
median per model and its ratio to the first (docs/experiments.md, section 8, "Test-time
views for Omniglot").

    PYTHONPATH=src python scripts/embed_speed.py omniglot runs/ov/m_s1_st25 --batch 256 --batches 4 --reps 5
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from twinshot.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=4, help="batches per timing")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = {ref: load_model(ref).eval() for ref in args.models}
    x = {ref: torch.rand(args.batch, *m.encoder.input_shape) for ref, m in models.items()}
    speeds: dict[str, list[float]] = {ref: [] for ref in models}
    with torch.inference_mode():
        for ref, m in models.items():  # warm-up
            m.encoder(x[ref])
        for _ in range(args.reps):
            for ref, m in models.items():
                t = time.perf_counter()
                for _ in range(args.batches):
                    m.encoder(x[ref])
                speeds[ref].append(args.batch * args.batches / (time.perf_counter() - t))
    first = statistics.median(speeds[args.models[0]])
    out = {ref: {"images_per_s": statistics.median(s), "all": s, "ratio_to_first": statistics.median(s) / first} for ref, s in speeds.items()}
    for ref, r in out.items():
        print(f"{ref}: {r['images_per_s']:.0f} images/s (median of {args.reps}; x{r['ratio_to_first']:.2f} of the first)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
