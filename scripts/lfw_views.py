"""Experiment (docs/applications.md, faces): descriptors of LFW chips under test-time views.

Warps the chips of landmark variant 1 (the shipped ``faces`` alignment) from
``scripts/lfw_align_variants.py``'s npz (``scripts/lfw_chip_eval.py``'s ``chips_for``),
optionally replaces the photos re-aligned by ``scripts/lfw_centre_pick.py --out``, and saves
``(N, V, 128)`` descriptors (``--out``) of the views, in order:

0. the chip; 1. its mirror (0 and 1: the shipped descriptor);
2, 3. the same two with dlib's own input scaling, ``(x - mean RGB) / 256`` (face-api divides
   by 255);
4... the deterministic jitters of ``lfw_chip_eval.JITTERS[:K]`` (shift 2%, scale 0.95/1.05,
   rotation 3 degrees; dlib's ``jitter_image`` draws shifts of 2%, rotations of 3 degrees,
   scales 0.97-1), each followed by its mirror.

    PYTHONPATH=src:scripts python scripts/lfw_views.py --centre runs/lfw_emb_centre.npz --jitter 4 \
        --out runs/lfw_views.npy
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lfw_chip_eval import JITTERS, chips_for, jitter
from twinshot.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--landmarks", type=Path, default=Path("runs/lfw_landmarks.npz"))
    ap.add_argument("--centre", type=Path, help="npz of scripts/lfw_centre_pick.py: chips that replace those of its paths")
    ap.add_argument("--jitter", type=int, default=0)
    ap.add_argument("--only-256", action="store_true", help="only views 2 and 3 (saved as 0 and 1)")
    ap.add_argument("--skip-256", action="store_true", help="leave views 2 and 3 out (the jitters follow 0 and 1)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = dict(np.load(args.landmarks))
    model = load_model("faces")
    enc = model.encoder
    chip_file = args.out.with_suffix(".chips.npy")
    if chip_file.is_file():
        chips = np.load(chip_file)
    else:
        chips = chips_for(data, 1, replace(model.preprocessing, align="", crop=0.48))
        if args.centre:
            c = np.load(args.centre)
            index = {p: i for i, p in enumerate(data["paths"].tolist())}
            for path, chip in zip(c["changed"].tolist(), c["chips"]):
                chips[index[path]] = chip
        np.save(chip_file, chips)
    outs = []
    t0 = time.time()
    with torch.no_grad():
        for i in range(0, len(chips), 32):
            x = torch.from_numpy(chips[i : i + 32]).float().div(255.0)[:, None].expand(-1, 3, -1, -1).contiguous()
            views = [x, x.flip(3)]
            d256 = [(v - enc.mean) * (255.0 / 256.0) + enc.mean for v in views]  # (X - M) / 256 inside the net
            views = d256 if args.only_256 else views if args.skip_256 else views + d256
            for j in JITTERS[: args.jitter]:
                xj = jitter(x, *j)
                views += [xj, xj.flip(3)]
            d = enc.descriptor(torch.cat(views, 0))
            outs.append(d.view(len(views), x.shape[0], -1).permute(1, 0, 2).numpy())
            if i % 640 == 0:
                print(f"{i}/{len(chips)} {time.time() - t0:.0f}s", flush=True)
    np.save(args.out, np.concatenate(outs, 0))
    print("done", time.time() - t0)


if __name__ == "__main__":
    main()
