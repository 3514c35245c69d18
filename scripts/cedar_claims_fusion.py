"""Experiment (docs/applications.md, "Fusing the writer SVM and the pair model for claims",
run 23): score fusion of the two claim scorers of one writer split,

* s1: the writer-dependent SVM's decision value (`twinshot evaluate cedar-claims MODEL
  --scoring svm`: RBF SVM on the signet model's `grid` features, R references + 10 distorted
  copies each vs a cohort of other writers' genuine signatures);
* s2: the pair model's score (`signatures-cedar-pairs`-like, the split's own
  `runs/exp/pairs_sym_sS`) of the questioned signature against each of the R references,
  combined by mean (and max),

on the same claims (`scripts/cedar_exp.claim_split`, the shuffle of cedar-claims).

Two groups of claims are scored and cached in `runs/exp/claimscores_sS.npz`:

* `val`: the split's 10 held-out writers, exactly as `cedar-claims --scoring svm` (cohort:
  the 35 training writers' genuine signatures);
* `train`: the split's 35 training writers, each writer's SVM against the other 34 (leave
  one writer out of the cohort); random claims: 12 questioned signatures of other training
  writers (seeded). Both networks were trained on these writers, so their scores here are
  optimistic; they are the only writers the fusion may be fitted on.

    PYTHONPATH=src:scripts python scripts/cedar_claims_fusion.py --split S --svm-model MODEL   # S = 0 (MODEL signatures-cedar), 20, 23 (runs/foldS)
    PYTHONPATH=src:scripts python scripts/cedar_claims_fusion.py --split S --svm-model MODEL --inner

With `--inner`, the `inner` group instead: the split's inner fold (`cedar_exp.inner_split`:
10 of its training writers held out, a 2-channel net trained on the other 25 by
`scripts/cedar_twochannel.py --inner`, the pair model built from those 25 as
`scripts/cedar_pairs_model.py` does), scored as `val` with the 25 as the SVM cohort: pair
scores on writers the pair model never saw, for fitting the fusion weight. The SVM's
features still come from the split's signet model (trained on all 35 training writers).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from cedar_exp import SPLITS, claim_split, inner_split, load_all
from twinshot.models.io import load_model
from twinshot.writer_dependent import Standardiser, WriterClassifier, image_features

RS = (1, 5, 12)
KIND = {"genuine": 0, "skilled": 1, "random": 2}


def copies_of(model, paths, refs, augment=10, seed=0):
    """As twinshot.evaluation.claims._reference_copies: writer -> (augment, 12, F)."""
    order = sorted(refs)
    pool = [paths[i] for w in order for i in refs[w]]
    aug = image_features(model, pool, "grid", copies=augment, seed=seed).reshape(augment, len(pool), -1)
    return {w: aug[:, k * 12:(k + 1) * 12] for k, w in enumerate(order)}


def score_group(group, writers, cohort_writers, feats, emb, pairs_model, copies, writer, genuine, n_random=None, seed=0):
    refs, quest, forged = claim_split(writer, genuine, writers)
    rng = np.random.default_rng(seed)
    rows = {"writer": [], "kind": [], "q": [], **{f"s1_r{r}": [] for r in RS}, "s2": []}
    for w in sorted(writers):
        others = [i for o in sorted(writers) if o != w for i in quest[o]]
        if n_random is not None:
            others = sorted(rng.choice(others, n_random, replace=False).tolist())
        q = quest[w] + forged[w] + others
        kinds = [0] * len(quest[w]) + [1] * len(forged[w]) + [2] * len(others)
        neg = feats[np.isin(writer, [c for c in cohort_writers if c != w]) & genuine]
        std = Standardiser.fit(neg)
        for r in RS:
            clf = WriterClassifier(None, std).fit(feats[refs[w][:r]], neg, copies[w][:, :r].reshape(-1, feats.shape[1]))
            rows[f"s1_r{r}"].append(clf.decision_function(feats[q]))
        with torch.no_grad():
            s2 = pairs_model.head.pairwise_similarity(emb[q], emb[refs[w]]).numpy()  # (Q, 12) (questioned, reference)
        rows["s2"].append(s2)
        rows["writer"].append(np.full(len(q), w))
        rows["kind"].append(np.array(kinds))
        rows["q"].append(np.array(q))
        print(group, w, len(q), flush=True)
    return {f"{group}_{k}": np.concatenate(v) for k, v in rows.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", type=int, default=0)
    ap.add_argument("--svm-model", default="signatures-cedar")
    ap.add_argument("--pairs-model", default=None, help="default runs/exp/pairs_sym_sS")
    ap.add_argument("--inner", action="store_true", help="score the split's inner fold instead (see the module)")
    ap.add_argument("--val-only", action="store_true", help="score the held-out writers only (enough for --how cross)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    out = Path(f"runs/exp/claimscores_s{a.split}{'_inner' if a.inner else ''}.npz")
    images, xu, writer, genuine = load_all()
    paths = [im.path for im in images]
    val = SPLITS[a.split]
    train = [w for w in range(1, 46) if w not in val]
    svm_model = load_model(a.svm_model).eval()
    x = xu.float() / 255.0
    if a.inner:
        from cedar_pairs_model import build

        inner, inner_train = inner_split(a.split)
        pairs_model = build(a.split, f"runs/exp/2ch600_s{a.split}_inner.pt", x, writer, genuine, symmetric=True,
                            train=inner_train, tag="_inner")[0]
    else:
        pairs_model = load_model(a.pairs_model or f"runs/exp/pairs_sym_s{a.split}").eval()
    feats = image_features(svm_model, paths, "grid")
    emb = torch.cat([x.flatten(1), torch.from_numpy(np.load("runs/exp/desc_150x220.npy"))], 1)  # = pairs_model.embed(x)
    print(f"features {time.time() - t0:.0f}s", flush=True)
    res = {}
    if a.inner:
        irefs = claim_split(writer, genuine, inner)[0]
        res.update(score_group("inner", inner, inner_train, feats, emb, pairs_model, copies_of(svm_model, paths, irefs), writer, genuine))
        np.savez(out, **res)
        print(json.dumps({"split": a.split, "out": str(out), "seconds": round(time.time() - t0)}), flush=True)
        return
    vrefs = claim_split(writer, genuine, val)[0]
    res.update(score_group("val", val, train, feats, emb, pairs_model, copies_of(svm_model, paths, vrefs), writer, genuine))
    print(f"val {time.time() - t0:.0f}s", flush=True)
    if a.val_only:
        np.savez(out, **res)
        print(json.dumps({"split": a.split, "out": str(out), "seconds": round(time.time() - t0)}), flush=True)
        return
    trefs = claim_split(writer, genuine, train)[0]
    res.update(score_group("train", train, train, feats, emb, pairs_model, copies_of(svm_model, paths, trefs), writer, genuine, n_random=12))
    np.savez(out, **res)
    print(json.dumps({"split": a.split, "out": str(out), "seconds": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    main()
