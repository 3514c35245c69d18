"""Experiment (docs/applications.md, "Pair models and the dichotomy transform"): a 2-channel pair
model on CEDAR. The reference and the questioned signature (150x220, ink as foreground) are
stacked as two input channels; a small CNN (16-32-48-64-96, global mean+max pool, FC 64) outputs
a same/forged logit. Trained on the 35 training writers of a split: half genuine pairs, 35%
genuine vs that writer's skilled forgery, 15% vs another writer; both images jittered
independently (rotation 8, shear 0.15, scale 0.85-1.15, 7 px); BCE, Adam 1e-3, cosine. Selected
on the held-out writers' skilled EER (as the preset); then the pairs and claims (mean logit over
the R references) of those writers.

    PYTHONPATH=src:scripts python scripts/cedar_twochannel.py --split 0 --steps 600 --eval-every 300 --out runs/exp/2ch_s0.pt
    # run 20: longer, the last step kept (no selection on the held-out writers)
    PYTHONPATH=src:scripts python scripts/cedar_twochannel.py --split 0 --steps 1200 --eval-every 1200 --keep last --claims-r '' --out runs/exp/2ch1200_s0.pt
    # run 23: the inner fold (25 of the 35 training writers; scripts/cedar_claims_fusion.py --inner)
    PYTHONPATH=src:scripts python scripts/cedar_twochannel.py --split 0 --inner --steps 600 --eval-every 600 --keep last --claims-r '' --out runs/exp/2ch600_s0_inner.pt
"""
from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cedar_exp import SPLITS, claims_eval, inner_split, load_all, pair_indices, rates
from twinshot.data.augment import KochAffine


class TwoChannel(nn.Module):
    def __init__(self, widths=(16, 32, 48, 64, 96), in_ch=2, dropout=0.3):
        super().__init__()
        w = widths
        def block(i, o, k=3, s=1):
            return [nn.Conv2d(i, o, k, s, k // 2, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(
            *block(in_ch, w[0], 5, 2), nn.MaxPool2d(2),
            *block(w[0], w[1]), nn.MaxPool2d(2),
            *block(w[1], w[2]), *block(w[2], w[3]), nn.MaxPool2d(2),
            *block(w[3], w[4]),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * w[4], 64), nn.ReLU(inplace=True), nn.Linear(64, 1))

    def forward(self, a, b):
        x = self.features(torch.cat([a, b], 1))
        x = torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)
        return self.head(x).squeeze(1)


@torch.no_grad()
def score_pairs(model, x, pairs, bs=256):
    model.eval()
    out = []
    for i in range(0, len(pairs), bs):
        p = pairs[i:i + bs]
        out.append(model(x[p[:, 0]], x[p[:, 1]]))
    model.train()
    return torch.cat(out).numpy() if out else np.zeros(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--eval-every", type=int, default=300)
    ap.add_argument("--skilled", type=float, default=0.35)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", default="150,220")
    ap.add_argument("--out", default=None)
    ap.add_argument("--claims-r", default="1,5,12", help="references per claim in the final claims report ('' for none)")
    ap.add_argument("--keep", choices=("best", "last"), default="best",
                    help="best: the step with the lowest held-out skilled EER (runs 16); last: the final step, no selection")
    ap.add_argument("--inner", action="store_true",
                    help="train on the split's inner fold (cedar_exp.inner_split): 25 training writers, the other 10 held out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    size = tuple(int(s) for s in a.size.split(","))
    images, xu, writer, genuine = load_all(size)
    x = xu.float() / 255.0
    val = SPLITS[a.split]
    train = [w for w in range(1, 46) if w not in val]
    if a.inner:
        val, train = inner_split(a.split)
    gof = {w: np.nonzero((writer == w) & genuine)[0] for w in train}
    fof = {w: np.nonzero((writer == w) & ~genuine)[0] for w in train}
    gen, skl, rnd = pair_indices(writer, genuine, val)
    model = TwoChannel()
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s, a.steps) / a.steps)))
    aug = KochAffine(rotation=8.0, shear=0.15, scale=(0.85, 1.15), translate=7.0, p=0.8)
    g = torch.Generator().manual_seed(a.split)
    rng = np.random.default_rng(a.split)
    best = (1.0, -1)
    t0 = time.time()
    log = []
    for step in range(1, a.steps + 1):
        B = a.batch
        nb_same = B // 2
        nb_skl = int(round(B * a.skilled))
        nb_rnd = B - nb_same - nb_skl
        ws = rng.choice(train, B)
        ia, ib, y = [], [], []
        for k, w in enumerate(ws):
            r = rng.choice(gof[w])
            if k < nb_same:
                q = rng.choice(gof[w][gof[w] != r]); yy = 1
            elif k < nb_same + nb_skl:
                q = rng.choice(fof[w]); yy = 0
            else:
                o = rng.choice([v for v in train if v != w]); q = rng.choice(gof[o]); yy = 0
            if rng.random() < 0.5:
                r, q = q, r
            ia.append(r); ib.append(q); y.append(yy)
        xa = aug(x[ia], g); xb = aug(x[ib], g)
        logits = model(xa, xb)
        loss = F.binary_cross_entropy_with_logits(logits, torch.tensor(y, dtype=torch.float32))
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
        if step % 20 == 0:
            print(f"step {step} loss {loss.item():.4f} {time.time()-t0:.0f}s", flush=True)
        if step % a.eval_every == 0 or step == a.steps:
            sg = score_pairs(model, x, gen); ss = score_pairs(model, x, skl)
            es, fs = rates(sg, ss)
            rec = {"step": step, "skilled_eer": es, "skilled_frr_far1": fs, "time": time.time() - t0}
            if a.keep == "last" or es < best[0]:
                best = (es, step)
                if a.out:
                    torch.save(model.state_dict(), a.out)
            log.append(rec)
            print(json.dumps(rec), flush=True)
    print("best", best, flush=True)
    if a.out:
        model.load_state_dict(torch.load(a.out))
    sg = score_pairs(model, x, gen)
    print(json.dumps({"best_step": best[1], "pairs_skilled": rates(sg, score_pairs(model, x, skl)), "pairs_random": rates(sg, score_pairs(model, x, rnd))}), flush=True)
    for R in [int(r) for r in a.claims_r.split(",") if r]:
        def fn(w, refs, q):
            p = np.array([(r, i) for i in q for r in refs])
            s = score_pairs(model, x, p).reshape(len(q), len(refs))
            return s.mean(1)
        res = claims_eval(fn, writer, genuine, val, R=R)
        print(json.dumps({"R": R, "claims_mean": res}), flush=True)


if __name__ == "__main__":
    main()
