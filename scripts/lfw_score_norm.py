"""Experiment (docs/applications.md, faces): cohort score normalisation of LFW pair scores.

Scores every pair of a pairs file by cosine between descriptors, raw and normalised with a
cohort of impostor descriptors (:class:`twinshot.gallery.cohort.CohortNorm`: S-norm over the
whole cohort, AS-norm over each side's ``top_k`` best cohort scores), and applies the LFW
protocol (threshold from the other folds) to each. The cohort is the LFW people outside
``pairs_dev.txt`` (and outside the held-out folds 9-10, which are not in the dataset here):
no person of an evaluated pair.

Descriptors: an ``(N, V, 128)`` npy of ``scripts/lfw_views.py`` (``--views`` averages the
first V) or the ``embeddings`` of an npz (``twinshot evaluate lfw --cache``).

    PYTHONPATH=src python scripts/lfw_score_norm.py --emb runs/cache-v2/embeddings-*.npz \
        --cohort-emb runs/cohort/views.npy
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from twinshot.evaluation.lfw import lfw_protocol, read_lfw_pairs
from twinshot.gallery.cohort import cohort_stats


def load(path: Path, views: int) -> np.ndarray:
    """``(N, 128)`` descriptors: the mean of the first ``views`` of an ``(N, V, 128)`` npy, or
    the ``embeddings`` of an npz (``twinshot evaluate lfw --cache``, ``lfw_centre_pick.py``)."""
    if path.suffix == ".npz":
        with np.load(path) as data:
            return data["embeddings"]
    return np.load(path)[:, :views].mean(1)


def unit(e: np.ndarray) -> np.ndarray:
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def result(s: np.ndarray, same: np.ndarray, fold_of: np.ndarray) -> dict:
    r = lfw_protocol(s, same, fold_of)
    return {"acc": round(r.accuracy * 100, 3), "se": round(r.standard_error * 100, 3), "eer": round(r.pooled.eer * 100, 3),
            "auc": round(r.pooled.auc, 5), "tar1e-3": round(r.pooled.tar_at_far["1e-3"] * 100, 2),
            "folds": [round(f.accuracy * 100, 2) for f in r.folds]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default="../shared/datasets/lfw/pairs_dev.txt")
    ap.add_argument("--emb", type=Path, required=True)
    ap.add_argument("--cohort-emb", type=Path, required=True)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--top-k", type=int, nargs="+", default=[100])
    args = ap.parse_args()
    emb = unit(load(args.emb, args.views))
    cohort = unit(load(args.cohort_emb, args.views))
    folds = read_lfw_pairs(args.pairs)
    pairs = [p for f in folds for p in f]
    # the photo order of scripts/lfw_align_variants.py and `twinshot evaluate lfw --cache`
    paths = list(dict.fromkeys(os.fspath(q) for p in pairs for q in (p.path1, p.path2)))
    index = {p: i for i, p in enumerate(paths)}
    i1 = np.array([index[os.fspath(p.path1)] for p in pairs])
    i2 = np.array([index[os.fspath(p.path2)] for p in pairs])
    same = np.array([p.same for p in pairs])
    fold_of = np.concatenate([np.full(len(f), i) for i, f in enumerate(folds)])
    raw = (emb[i1] * emb[i2]).sum(1)
    c = emb @ cohort.T  # (N, K) cosine of every photo with every cohort photo
    out = {"raw cosine": result(raw, same, fold_of)}
    for k in [None, *args.top_k]:
        mu, sd = cohort_stats(c, k)
        s = 0.5 * ((raw - mu[i1]) / sd[i1] + (raw - mu[i2]) / sd[i2])
        out["snorm" if k is None else f"asnorm top{k}"] = result(s, same, fold_of)
    print(f"photos {len(paths)}, cohort {len(cohort)}, views {args.views}")
    for name, v in out.items():
        print(f"{name:14s}", json.dumps(v), flush=True)


if __name__ == "__main__":
    main()
