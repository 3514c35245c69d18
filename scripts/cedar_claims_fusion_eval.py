"""Analysis of scripts/cedar_claims_fusion.py's cached scores (docs/applications.md, run 23):
the rates of the SVM alone, the pair model alone (mean / max over the R references) and their
fusions on each split's held-out writers.

`main` (the first try): fusions fitted on the split's own training writers with its own models
(the `train` group: z-scored sums with a weight, logistic regressions); the pair model scores
its training writers almost perfectly, so these overweight it. `report`: the fusion
`s1 + a * s2` with one weight `a` for every R, chosen (`weights`) on the split's inner fold
(`inner`, strict: the pair model never saw those writers; the split's signet did) or on the other
splits' held-out writers (`cross`); `oracle` (hindsight on the held-out writers) is an upper
bound, never used. `--write` stores a split's fusion in a model's model.json.

    PYTHONPATH=src:scripts python scripts/cedar_claims_fusion_eval.py 0 20 23
    PYTHONPATH=src:scripts python scripts/cedar_claims_fusion_eval.py 0 20 23 --how cross --write 0 src/twinshot/pretrained/signatures-cedar signatures-cedar-pairs
"""
from __future__ import annotations

import sys

import numpy as np
from sklearn.linear_model import LogisticRegression

from cedar_exp import rates

RS = (1, 5, 12)
WEIGHTS = np.round(np.arange(0.0, 3.01, 0.1), 2)


def group(z, g, r):
    s1 = z[f"{g}_s1_r{r}"]
    s2 = z[f"{g}_s2"][:, :r]
    return s1, s2.mean(1), s2.max(1), z[f"{g}_kind"]


def table(score, kind):
    gen = score[kind == 0]
    sk = rates(gen, score[kind == 1])
    rd = rates(gen, score[kind == 2])
    return sk + rd  # skilled eer, frr@1%, random eer, frr@1%


def cost(score, kind):
    e, f, _, _ = table(score, kind)
    return e + f


def main(splits):
    allres = {}
    for split in splits:
        z = np.load(f"runs/exp/claimscores_s{split}.npz")
        for r in RS:
            t1, t2m, t2x, tk = group(z, "train", r)
            v1, v2m, v2x, vk = group(z, "val", r)
            res = {"svm": table(v1, vk), "pairs_mean": table(v2m, vk), "pairs_max": table(v2x, vk)}
            res["train:svm"] = table(t1, tk)
            res["train:pairs_mean"] = table(t2m, tk)
            for name, t2, v2 in (("mean", t2m, v2m), ("max", t2x, v2x)):
                m1, sd1, m2, sd2 = t1.mean(), t1.std(), t2.mean(), t2.std()
                zt = lambda w: (t1 - m1) / sd1 + w * (t2 - m2) / sd2
                zv = lambda w: (v1 - m1) / sd1 + w * (v2 - m2) / sd2
                res[f"z1:1 {name}"] = table(zv(1.0), vk)
                wt = WEIGHTS[int(np.argmin([cost(zt(w), tk) for w in WEIGHTS]))]
                res[f"z w={wt} (train) {name}"] = table(zv(wt), vk)
                wo = WEIGHTS[int(np.argmin([cost(zv(w), vk) for w in WEIGHTS]))]
                res[f"ORACLE z w={wo} {name}"] = table(zv(wo), vk)
                for sub, keep in (("all", tk >= 0), ("skilled", tk <= 1)):
                    lr = LogisticRegression(class_weight="balanced").fit(np.c_[t1, t2][keep], (tk == 0)[keep])
                    c = lr.coef_[0]
                    res[f"LR[{sub}] {name} w2/w1={c[1] / c[0] * sd1 / sd2:.2f}z"] = table(v1 * c[0] + v2 * c[1], vk)
            allres[(split, r)] = res
            print(f"\n== split {split} R={r} (skilled EER, FRR@1%, random EER, FRR@1%)")
            for k, v in res.items():
                print(f"{k:40s} " + " ".join(f"{100 * x:6.2f}" for x in v))
    return allres




RAW = np.round(np.arange(0.0, 0.601, 0.02), 3)


def _claims(split, g, r, combine, drop=()):
    """(s1, s2, kind) of group ``g``'s claims at ``R = r``, without the claims whose claimed
    or questioned writer is in ``drop``."""
    from cedar_exp import ROOT
    from twinshot.data.datasets.cedar import cedar_images

    z = np.load(f"runs/exp/claimscores_s{split}{'_inner' if g == 'inner' else ''}.npz")
    s1, s2m, s2x, kind = group(z, g, r)
    qw = np.array([im.writer for im in cedar_images(ROOT)])[z[f"{g}_q"]]
    keep = ~np.isin(z[f"{g}_writer"], list(drop)) & ~np.isin(qw, list(drop))
    s2 = s2x if combine == "max" else s2m
    return s1[keep], s2[keep], kind[keep]


def _curve(claims):
    """cost(s1 + a * s2) for every a of RAW, summed over the given claim sets."""
    return sum(np.array([cost(s1 + a * s2, k) for a in RAW]) for s1, s2, k in claims)


def weights(splits, combine="max"):
    """Per split: the fusion weight ``a`` of ``s1 + a * s2`` (one for every R), chosen two ways
    without the split's held-out writers: ``inner`` on its inner fold (pair model trained
    without those writers), ``cross`` on the other splits' held-out writers (minus any of
    this split's held-out writers, e.g. 41 of splits 20 and 23); and ``oracle`` (hindsight,
    on the held-out writers themselves: an upper bound, never used)."""
    from cedar_exp import SPLITS

    out = {}
    for s in splits:
        drop = set(SPLITS[s])
        res = {"cross": float(RAW[int(np.argmin(_curve([_claims(t, "val", r, combine, drop) for t in splits if t != s for r in RS])))]),
               "oracle": float(RAW[int(np.argmin(_curve([_claims(s, "val", r, combine) for r in RS])))])}
        try:
            res["inner"] = float(RAW[int(np.argmin(_curve([_claims(s, "inner", r, combine) for r in RS])))])
        except FileNotFoundError:
            pass
        out[s] = res
    return out


def report(splits, combine="max"):
    """Rates on each split's held-out writers: SVM alone, pairs alone, fused with each weight."""
    w = weights(splits, combine)
    rows = {}
    for s in splits:
        for r in RS:
            s1, s2, k = _claims(s, "val", r, combine)
            rows[(s, r, "svm")] = table(s1, k)
            rows[(s, r, f"pairs {combine}")] = table(s2, k)
            for how, a in w[s].items():
                rows[(s, r, f"fused {how}")] = table(s1 + a * s2, k)
    return w, rows


def fitting_claims(split, splits, how, combine="max"):
    """The claims a weight of ``split`` is chosen on (see :func:`weights`), every R."""
    from cedar_exp import SPLITS

    if how == "inner":
        return [_claims(split, "inner", r, combine) for r in RS]
    return [_claims(t, "val", r, combine, set(SPLITS[split])) for t in splits if t != split for r in RS]


def write_fusion(model_dir, pairs_model, split, splits, how, combine="max"):
    """Store the fusion of ``split`` (weight chosen ``how``; threshold: the fused score's
    skilled-forgery EER threshold on the same claims, all R pooled) in ``model_dir``'s
    model.json ``extra["claims_fusion"]`` (the weights file is untouched)."""
    import json
    from pathlib import Path

    from twinshot.evaluation import metrics
    from twinshot.writer_dependent.fusion import FUSION_KEY, ClaimFusion

    a = weights(splits, combine)[split][how]
    fused, same = [], []
    for s1, s2, k in fitting_claims(split, splits, how, combine):
        keep = k <= 1
        fused.append((s1 + a * s2)[keep])
        same.append(k[keep] == 0)
    _, thr = metrics.equal_error_rate(np.concatenate(fused), np.concatenate(same))
    where = {"inner": f"the inner fold of split {split} (10 of its training writers, pair model trained on the other 25)",
             "cross": f"the held-out writers of splits {', '.join(str(t) for t in splits if t != split)} minus split {split}'s"}[how]
    fusion = ClaimFusion(str(pairs_model), float(a), combine, float(round(thr, 4)),
                         f"scripts/cedar_claims_fusion_eval.py: weight minimising skilled EER + FRR at FAR 1% (R = 1, 5, 12) on {where}; "
                         f"threshold: the skilled EER threshold there")
    path = Path(model_dir) / "model.json"
    meta = json.loads(path.read_text())
    meta.setdefault("extra", {})[FUSION_KEY] = fusion.to_dict()
    path.write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps({"model": str(model_dir), FUSION_KEY: fusion.to_dict()}))


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("splits", nargs="*", type=int, default=[0, 20, 23])
    ap.add_argument("--write", nargs=3, action="append", metavar=("SPLIT", "MODEL_DIR", "PAIRS_MODEL"), default=[],
                    help="store split SPLIT's fusion in MODEL_DIR/model.json, naming PAIRS_MODEL")
    ap.add_argument("--how", choices=("inner", "cross"), default="inner")
    ap.add_argument("--combine", choices=("max", "mean"), default="max")
    ap.add_argument("--no-train", action="store_true", help="skip the train-group fits (scores from cedar_claims_fusion.py --val-only)")
    a = ap.parse_args()
    if a.write:
        for split, model_dir, pairs_model in a.write:
            write_fusion(model_dir, pairs_model, int(split), a.splits, a.how, a.combine)
        raise SystemExit(0)
    args = a.splits
    if not a.no_train:
        main(args)
    for combine in ("max", "mean"):
        w, rows = report(args, combine)
        print(f"\n### combine {combine}; weights {w}")
        names = sorted({n for (_, _, n) in rows}, key=lambda n: (n != "svm", n))
        for r in RS:
            for n in names:
                vals = [rows[(s, r, n)] for s in args]
                cells = " | ".join("%.2f / %.2f ; %.2f / %.2f" % tuple(100 * x for x in v) for v in vals)
                print(f"R={r:2d} {n:16s} | {cells} | mean " + "%.2f / %.2f ; %.2f / %.2f" % tuple(100 * np.mean(vals, 0)))
