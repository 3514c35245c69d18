"""Experiment (docs/applications.md, "Pair models and the dichotomy transform"): the classic
dichotomy transform. Handcrafted features per image (HOG at 3x5, 6x9 and 12x18 cells, uniform
LBP histograms over the whole image and 3x4 cells, ink density on a 10x15 grid: 3,130 numbers on
the 150x220 model input); a pair is |f(a) - f(b)|; a writer-independent classifier (logistic
regression or gradient boosting) is trained on the training writers' genuine-genuine (label 1)
vs genuine-forgery and genuine-other-writer pairs (label 0) and scores the held-out writers'
pairs and claims (mean over the R references).

    PYTHONPATH=src:scripts python scripts/cedar_dichotomy.py --clf logreg   # or --clf gbdt
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from cedar_exp import SPLITS, claims_eval, load_all, pair_indices, rates
from twinshot.writer_dependent.handcrafted import (
    DESCRIPTOR_DENSITY_GRID,
    DESCRIPTOR_HOG_GRIDS,
    DESCRIPTOR_LBP_GRIDS,
    hog_features,
    ink_density,
    lbp_features,
)


def features(x: np.ndarray, kind: str) -> np.ndarray:
    """The descriptor's parts named in ``kind`` ("hog,lbp,den": all of
    twinshot.writer_dependent.handcrafted.signature_descriptor, 3,130 numbers)."""
    parts = []
    if "hog" in kind:
        parts += [hog_features(x, g) for g in DESCRIPTOR_HOG_GRIDS]
    if "lbp" in kind:
        parts += [lbp_features(x, g) for g in DESCRIPTOR_LBP_GRIDS]
    if "den" in kind:
        parts.append(ink_density(x, DESCRIPTOR_DENSITY_GRID))
    return np.concatenate(parts, 1).astype(np.float32)


def sample_train_pairs(writer, genuine, train, rng, n_random=100):
    gen, skl, rnd = [], [], []
    for w in train:
        g = np.nonzero((writer == w) & genuine)[0]
        f = np.nonzero((writer == w) & ~genuine)[0]
        gen += [(a, b) for i, a in enumerate(g) for b in g[i + 1:]]
        skl += [(a, b) for a in g for b in f]
        others = np.nonzero(np.isin(writer, [v for v in train if v != w]) & genuine)[0]
        rnd += [(rng.choice(g), rng.choice(others)) for _ in range(n_random)]
    return np.array(gen), np.array(skl), np.array(rnd)


def training_differences(f, writer, genuine, train):
    """``|f(a) - f(b)|`` of the training writers' pairs (seeded) and their labels (1 = same writer, genuine)."""
    tg, ts, tr = sample_train_pairs(writer, genuine, train, np.random.default_rng(0))
    tp = np.concatenate([tg, ts, tr])
    ty = np.r_[np.ones(len(tg)), np.zeros(len(ts) + len(tr))]
    return np.abs(f[tp[:, 0]] - f[tp[:, 1]]), ty


def fit_logreg(f, writer, genuine, train):
    """The dichotomy transform's classifier: (logistic regression C 0.1 balanced, its StandardScaler)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    d, ty = training_differences(f, writer, genuine, train)
    sc = StandardScaler().fit(d)
    return LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced").fit(sc.transform(d), ty), sc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="hog,lbp,den")
    ap.add_argument("--clf", default="logreg")
    ap.add_argument("--splits", default="0,20,23")
    ap.add_argument("--size", default="150,220")
    a = ap.parse_args()
    torch.set_num_threads(1)
    size = tuple(int(s) for s in a.size.split(","))
    images, xu, writer, genuine = load_all(size)
    x = (xu.float() / 255.0).numpy()[:, 0]
    t0 = time.time()
    import os
    cache = f"runs/exp/feat_{a.kind.replace(',', '-')}_{size[0]}x{size[1]}.npy"
    if os.path.exists(cache):
        f = np.load(cache)
    else:
        f = features(x, a.kind)
        np.save(cache, f)
    print("features", f.shape, f"{time.time()-t0:.0f}s", flush=True)
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.preprocessing import StandardScaler
    for split in [int(s) for s in a.splits.split(",")]:
        val = SPLITS[split]
        train = [w for w in range(1, 46) if w not in val]
        if a.clf == "logreg":
            clf, sc = fit_logreg(f, writer, genuine, train)
        else:
            d, ty = training_differences(f, writer, genuine, train)
            sc = StandardScaler().fit(d)
            clf = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, class_weight="balanced", random_state=0, early_stopping=False)
            clf.fit(sc.transform(d), ty)

        def score(p):
            return clf.decision_function(sc.transform(np.abs(f[p[:, 0]] - f[p[:, 1]]))) if a.clf == "logreg" else \
                clf.predict_proba(sc.transform(np.abs(f[p[:, 0]] - f[p[:, 1]])))[:, 1]

        gen, skl, rnd = pair_indices(writer, genuine, val)
        sg = score(gen)
        res = {"split": split, "kind": a.kind, "clf": a.clf, "pairs_skilled": rates(sg, score(skl)), "pairs_random": rates(sg, score(rnd))}
        for R in (5,):
            def fn(w, refs, q):
                p = np.array([(r, i) for i in q for r in refs])
                return score(p).reshape(len(q), len(refs)).mean(1)
            res[f"claims_R{R}"] = claims_eval(fn, writer, genuine, val, R=R)
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
