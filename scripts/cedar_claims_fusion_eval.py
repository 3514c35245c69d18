"""Analysis of scripts/cedar_claims_fusion.py's cached scores (docs/applications.md, run 23):
the rates of the SVM alone, the pair model alone (mean / max over the R references) and
their fusions on each split's held-out writers, every fusion fitted on the split's training
writers only (the `train` group); the best weight in hindsight on the held-out writers is
printed as an upper bound, never used.

    PYTHONPATH=src:scripts python scripts/cedar_claims_fusion_eval.py 0 20 23
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


if __name__ == "__main__":
    args = [int(s) for s in sys.argv[1:]] or [0]
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
