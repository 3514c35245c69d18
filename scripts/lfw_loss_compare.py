"""Experiment (docs/applications.md, faces): the project's losses for fine-tuning the `faces`
encoder on LFW people, cross-validated over people: train on the people of folds 1-4, score
folds 5-8 (LFW protocol, threshold from the other 3 scored folds), then the other way round.

Input: the grey 150x150 chips of ``scripts/lfw_chip_eval.py`` (``runs/lfw_chips_<v>.npy``; the
shipped alignment is ``mirror``). Pairs are scored by ``--metric`` (cosine, as shipped). The trunk up to ``conv256_2`` is frozen and its outputs for
every chip and its mirror are cached once (``--trunk``); what trains is ``fc`` only
(``--train fc``) or the last residual block + ``fc`` (``--train top``, 1.2 M parameters), with

* ``contrastive``: every pair of a 64 x 4 batch (:class:`ContrastiveLoss`, margin 0.6 on the
  Euclidean distance, as face-api's threshold);
* ``triplet``: batch-hard triplet loss (margin 0.2);
* ``arcface``: ArcFace over all training people (one photo is enough; margin 28.6 deg, scale 30,
  class weights initialised to each person's mean pretrained descriptor).

The descriptor is the mirror average, as shipped. Every run reports the scored folds at
``--steps`` (no step selection).

    python scripts/lfw_loss_compare.py --losses contrastive triplet arcface --train top fc
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

from twinshot.evaluation.lfw import lfw_protocol, read_lfw_pairs
from twinshot.losses import ArcFaceLoss, ContrastiveLoss, TripletLoss
from twinshot.models import load_model


def trunk(enc, x: torch.Tensor) -> torch.Tensor:
    h = F.max_pool2d(F.relu(enc.stem(x - enc.mean)), 3, 2)
    for block in enc.blocks[:-1]:
        h = block(h)
    return h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default="../shared/datasets/lfw/pairs_dev.txt")
    ap.add_argument("--landmarks", type=Path, default=Path("runs/lfw_landmarks.npz"))
    ap.add_argument("--chips", type=Path, default=Path("runs/lfw_chips_mirror.npy"))
    ap.add_argument("--trunk", type=Path, default=Path("runs/lfw_trunk_mirror.pt"))
    ap.add_argument("--losses", nargs="+", default=["contrastive", "triplet", "arcface"])
    ap.add_argument("--train", nargs="+", default=["top", "fc"])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--metric", choices=["cosine", "euclidean"], default="cosine", help="the score of a pair (the shipped head: cosine)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    enc = load_model("faces").encoder
    paths = np.load(args.landmarks)["paths"].tolist()
    index = {p: i for i, p in enumerate(paths)}
    if args.trunk.is_file():
        feats = torch.load(args.trunk)
    else:
        chips = np.load(args.chips)
        out = []
        with torch.no_grad():
            for i in range(0, len(chips), 32):
                x = torch.from_numpy(chips[i : i + 32]).float().div(255.0)[:, None].expand(-1, 3, -1, -1)
                b = x.shape[0]
                t = trunk(enc, torch.cat([x, x.flip(3)]))
                out.append(torch.stack([t[:b], t[b:]], 1))
                if i % 640 == 0:
                    print(f"trunk {i}/{len(chips)}", flush=True)
        feats = torch.cat(out)  # (N, 2, 256, 10, 10)
        torch.save(feats, args.trunk)
    folds = read_lfw_pairs(args.pairs)
    person = lambda path: os.path.basename(os.path.dirname(path))  # noqa: E731

    def head(block, fc, f):
        return block(f).mean(dim=(2, 3)) @ fc

    def score(block, fc, test_folds):
        test = [p for f in test_folds for p in f]
        fold_of = np.concatenate([np.full(len(f), i) for i, f in enumerate(test_folds)])
        same = np.array([p.same for p in test])
        i1 = torch.tensor([index[os.fspath(p.path1)] for p in test])
        i2 = torch.tensor([index[os.fspath(p.path2)] for p in test])
        need = torch.unique(torch.cat([i1, i2]))
        e = torch.zeros(len(paths), 128)
        with torch.no_grad():
            for k in range(0, len(need), 256):
                j = need[k : k + 256]
                e[j] = (head(block, fc, feats[j, 0]) + head(block, fc, feats[j, 1])) / 2
        if args.metric == "cosine":
            s = F.cosine_similarity(e[i1], e[i2], dim=1).double().numpy()
        else:
            s = (-(e[i1] - e[i2]).norm(dim=1)).double().numpy()
        r = lfw_protocol(s, same, fold_of)
        return np.array([f.accuracy for f in r.folds]), r.pooled.eer, r.pooled.tar_at_far["1e-3"]

    results = []
    halves = [(folds[:4], folds[4:], "train 1-4, score 5-8"), (folds[4:], folds[:4], "train 5-8, score 1-4")]
    runs = [("frozen", "-")] + [(loss, tr) for loss in args.losses for tr in args.train]
    for loss_name, tr in runs:
        accs, eers, tars = [], [], []
        for train_folds, test_folds, _ in halves:
            torch.manual_seed(0)
            g = torch.Generator().manual_seed(0)
            block, fc = copy.deepcopy(enc.blocks[-1]), enc.fc.detach().clone().requires_grad_(True)
            scored = {person(os.fspath(q)) for f in test_folds for p in f for q in (p.path1, p.path2)}
            train = sorted({os.fspath(q) for f in train_folds for p in f for q in (p.path1, p.path2)})
            train = [p for p in train if person(p) not in scored]
            names = {n: i for i, n in enumerate(sorted({person(p) for p in train}))}
            rows = torch.tensor([index[p] for p in train])
            ty = torch.tensor([names[person(p)] for p in train])
            if loss_name != "frozen":
                params = [fc] + (list(block.parameters()) if tr == "top" else [])
                for p in block.parameters():
                    p.requires_grad_(tr == "top")
                extra = []
                if loss_name == "arcface":
                    loss_fn = ArcFaceLoss(len(names), 128, margin=28.6, scale=30.0)
                    with torch.no_grad():
                        e0 = (head(block, fc, feats[rows, 0]) + head(block, fc, feats[rows, 1])) / 2
                        centres = torch.zeros(len(names), 128).index_add_(0, ty, e0)
                        loss_fn.W.copy_(F.normalize(centres, dim=1).T)
                    extra = [loss_fn.W]
                elif loss_name == "triplet":
                    loss_fn = TripletLoss(margin=0.2, mining="batch_hard")
                else:
                    loss_fn = ContrastiveLoss(margin=0.6)
                opt = torch.optim.Adam([{"params": params, "lr": args.lr}] + ([{"params": extra, "lr": 1e-2}] if extra else []))
                counts = torch.bincount(ty)
                multi = torch.nonzero(counts >= 2).flatten()
                for step in range(args.steps):
                    if loss_name == "arcface":
                        idx = torch.randperm(len(rows), generator=g)[:256]
                    else:
                        pick = multi[torch.randperm(len(multi), generator=g)[:64]]
                        idx = torch.cat([torch.nonzero(ty == c).flatten()[torch.randperm(int(counts[c]), generator=g)[:4]] for c in pick.tolist()])
                    flip = torch.randint(2, (len(idx),), generator=g)
                    emb = head(block, fc, feats[rows[idx], flip])
                    if loss_name == "contrastive":
                        a, b = torch.triu_indices(len(idx), len(idx), 1)
                        loss = loss_fn(emb[a], emb[b], ty[idx][a] == ty[idx][b])
                    else:
                        loss = loss_fn(emb, ty[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            acc, eer, tar = score(block, fc, test_folds)
            accs.append(acc)
            eers.append(eer)
            tars.append(tar)
        a = np.concatenate(accs)
        res = {"metric": args.metric, "loss": loss_name, "train": tr, "steps": args.steps if loss_name != "frozen" else 0, "lr": args.lr,
               "accuracy": round(float(a.mean()) * 100, 2), "se": round(float(a.std(ddof=1) / np.sqrt(len(a))) * 100, 2),
               "half_accuracies": [round(float(x.mean()) * 100, 2) for x in accs],
               "eer": [round(e * 100, 2) for e in eers], "tar_1e-3": [round(t * 100, 1) for t in tars]}
        results.append(res)
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
