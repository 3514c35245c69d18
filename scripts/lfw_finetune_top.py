"""Experiment (docs/applications.md, faces): fine-tune the top of the `faces` encoder as a
Siamese twin on the people of LFW folds 1-4, judge it on folds 5-8 (other people).

The trunk up to ``conv256_2`` stays frozen; its outputs ``(256, 4, 4)`` for every aligned chip
and its mirror image are computed once (cached in ``--cache``). The last residual block
(``conv256_down_out``) and ``fc`` are trained with the project's batch-hard triplet loss (64
people x up to 4 photos per batch, a random mirror per photo), Adam; the descriptor is the
mirror average, as shipped. Folds 5-8 are scored with the LFW protocol (threshold from the
other 3 folds), before (frozen) and after.

    python scripts/lfw_finetune_top.py --steps 300 --lr 1e-4
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from twinshot.data.images import load_image
from twinshot.evaluation.lfw import lfw_protocol, read_lfw_pairs
from twinshot.faces.align import NoFaceError
from twinshot.losses.triplet import TripletLoss
from twinshot.models import load_model


def trunk(enc, x: torch.Tensor) -> torch.Tensor:
    h = F.max_pool2d(F.relu(enc.stem(x - enc.mean)), 3, 2)
    for block in enc.blocks[:-1]:
        h = block(h)
    return h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default="../shared/datasets/lfw/pairs_dev.txt")
    ap.add_argument("--cache", type=Path, default=Path("runs/trunk_features.pt"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--margin", type=float, default=0.2)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = load_model("faces")
    enc = model.encoder
    folds = read_lfw_pairs(args.pairs)
    index: dict[str, int] = {}
    for f in folds:
        for p in f:
            for q in (p.path1, p.path2):
                index.setdefault(os.fspath(q), len(index))
    paths = list(index)
    if args.cache.is_file():
        feats = torch.load(args.cache)
    else:
        fallback = model.preprocessing.__class__(size=(150, 150), channels=3, crop=0.48)
        out = []
        with torch.no_grad():
            for i, p in enumerate(paths):
                try:
                    img = load_image(p, model.preprocessing)
                except NoFaceError:
                    img = load_image(p, fallback)
                x = img[None].float() / 255.0
                out.append(trunk(enc, torch.cat([x, x.flip(3)])))
                if i % 500 == 0:
                    print(f"{i}/{len(paths)}", flush=True)
        feats = torch.stack(out)  # (N, 2, 256, 4, 4)
        torch.save(feats, args.cache)
    person = lambda path: os.path.basename(os.path.dirname(path))  # noqa: E731
    train = sorted({os.fspath(q) for f in folds[:4] for p in f for q in (p.path1, p.path2)})
    names = {n: i for i, n in enumerate(sorted({person(p) for p in train}))}
    tx = feats[[index[p] for p in train]]
    ty = torch.tensor([names[person(p)] for p in train])
    counts = torch.bincount(ty)
    test = [p for f in folds[4:] for p in f]
    fold_of = np.concatenate([np.full(len(f), i) for i, f in enumerate(folds[4:])])
    same = np.array([p.same for p in test])
    i1 = torch.tensor([index[os.fspath(p.path1)] for p in test])
    i2 = torch.tensor([index[os.fspath(p.path2)] for p in test])

    def head(block, fc, f: torch.Tensor) -> torch.Tensor:
        return block(f).mean(dim=(2, 3)) @ fc

    def evaluate(block, fc, name: str) -> dict:
        with torch.no_grad():
            e = (head(block, fc, feats[:, 0]) + head(block, fc, feats[:, 1])) / 2
            scores = (-(e[i1] - e[i2]).norm(dim=1)).double().numpy()
        r = lfw_protocol(scores, same, fold_of)
        res = {"run": name, "accuracy": r.accuracy, "standard_error": r.standard_error, "eer": r.pooled.eer,
               "auc": r.pooled.auc, "tar_at_far": r.pooled.tar_at_far}
        print(json.dumps(res), flush=True)
        return res

    block, fc = copy.deepcopy(enc.blocks[-1]), enc.fc.detach().clone().requires_grad_(True)
    results = [evaluate(block, fc, "frozen")]
    opt = torch.optim.Adam(list(block.parameters()) + [fc], lr=args.lr)
    loss_fn = TripletLoss(margin=args.margin, mining="batch_hard")
    g = torch.Generator().manual_seed(0)
    multi = torch.nonzero(counts >= 2).flatten()
    for step in range(1, args.steps + 1):
        pick = multi[torch.randperm(len(multi), generator=g)[:64]]
        idx = torch.cat([torch.nonzero(ty == c).flatten()[:4] for c in pick.tolist()])
        flip = torch.randint(2, (len(idx),), generator=g)
        loss = loss_fn(head(block, fc, tx[idx, flip]), ty[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            results.append(evaluate(block, fc, f"fine-tuned top block + fc, step {step}, lr {args.lr}, margin {args.margin}"))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
