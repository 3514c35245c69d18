"""Training-step throughput of the ``omniglot`` preset's model in each precision and memory
format (docs/experiments.md, section 4): forward, prototypical loss, backward and Adam on
one fixed 20-way 1-shot 5-query batch of 28x28 images.

    python -m bench.precision_bench                       # fp32 cl bf16 bf16cl, 1 thread
    python -m bench.precision_bench --threads 2 bf16cl clcompile

Variants are names made of: ``fp32`` (plain), ``cl`` (channels-last), ``bf16`` (the encoder
under ``torch.autocast`` in bfloat16), ``compile`` (``torch.compile`` of the encoder).
"""

from __future__ import annotations

import argparse
import time
from typing import Sequence

import torch

DEFAULT = ("fp32", "cl", "bf16", "bf16cl")


def images_per_second(variant: str, *, steps: int = 15, warmup: int = 3, seed: int = 0) -> float:
    from twinshot.losses import LOSSES
    from twinshot.models import build_model
    from twinshot.training import load_config
    from twinshot.training.run import model_spec

    torch.manual_seed(seed)
    model = build_model(model_spec(load_config(preset="omniglot"))).train()
    loss = LOSSES.build("prototypical")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(120, 1, 28, 28)
    support_labels, query_labels = torch.arange(20), torch.arange(20).repeat_interleave(5)
    if "cl" in variant:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    embed = torch.compile(model.embed) if "compile" in variant else model.embed

    def one() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in variant):
            e = embed(x)
        e = e.float()
        loss(e[:20], support_labels, e[20:], query_labels).backward()
        optimizer.step()

    for _ in range(warmup):
        one()
    t = time.perf_counter()
    for _ in range(steps):
        one()
    return steps * x.shape[0] / (time.perf_counter() - t)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.precision_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="*", default=list(DEFAULT))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=15)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for v in args.variants:
        print(f"{v}: {images_per_second(v, steps=args.steps):,.0f} images/s", flush=True)


if __name__ == "__main__":
    main()
