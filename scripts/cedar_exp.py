"""Helpers of the CEDAR experiment scripts (docs/applications.md, "Pair models and the dichotomy
transform"): all 2,160 CEDAR images decoded once at the signatures-cedar preprocessing and
cached under runs/exp/, the three writer splits, and the pair and claim protocols of
`twinshot pairs cedar` and `twinshot evaluate cedar-claims` on image indices (same pairs,
same seeded reference shuffle).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from twinshot.data.datasets.cedar import cedar_images
from twinshot.data.images import load_image
from twinshot.evaluation import metrics
from twinshot.preprocessing import Preprocessing

ROOT = "../shared/datasets/cedar"
SPLITS = {
    0: [3, 9, 17, 22, 23, 25, 31, 34, 37, 45],
    20: [2, 4, 6, 16, 18, 27, 32, 40, 41, 43],
    23: [7, 8, 15, 20, 21, 28, 29, 38, 41, 44],
}


def inner_split(split, n=10):
    """An inner fold of a split's 35 training writers (seeded by the split): ``n`` inner
    held-out writers and the other training writers, for fitting what must not see the
    split's held-out writers on honest (unseen) scores."""
    train = [w for w in range(1, 46) if w not in SPLITS[split]]
    inner = sorted(np.random.default_rng(1000 + split).choice(train, n, replace=False).tolist())
    return inner, [w for w in train if w not in inner]


def load_all(size=(150, 220)):
    cache = Path(f"runs/exp/cedar_{size[0]}x{size[1]}.pt")
    images = cedar_images(ROOT)
    if cache.exists():
        x = torch.load(cache)
    else:
        prep = Preprocessing(size=size, channels=1, invert=True, keep_aspect=True)
        x = torch.stack([load_image(im.path, prep) for im in images])
        torch.save(x, cache)
    writer = np.array([im.writer for im in images])
    genuine = np.array([im.genuine for im in images])
    return images, x, writer, genuine


def pair_indices(writer, genuine, writers, seed=0):
    """Same pairs as cedar_pairs: genuine (all unordered), skilled (every ref x forgery), random."""
    gen, skl, rnd = [], [], []
    g = torch.Generator().manual_seed(seed)
    order = sorted(writers)
    gof = {w: np.nonzero((writer == w) & genuine)[0].tolist() for w in order}
    fof = {w: np.nonzero((writer == w) & ~genuine)[0].tolist() for w in order}
    for w in order:
        refs = gof[w]
        gen += [(a, b) for i, a in enumerate(refs) for b in refs[i + 1:]]
        skl += [(a, f) for a in refs for f in fof[w]]
        others = [i for o in order if o != w for i in gof[o]]
        n = len(refs) * (len(refs) - 1) // 2
        ai = torch.randint(len(refs), (n,), generator=g).tolist()
        bi = torch.randint(len(others), (n,), generator=g).tolist()
        rnd += [(refs[a], others[b]) for a, b in zip(ai, bi)]
    return np.array(gen), np.array(skl), np.array(rnd)


def claim_split(writer, genuine, writers, pool=12, seed=0):
    """As cedar_writer_dependent: per writer a seeded shuffle of its genuine images."""
    g = torch.Generator().manual_seed(int(seed))
    refs, quest, forged = {}, {}, {}
    for w in sorted(writers):
        gen = np.nonzero((writer == w) & genuine)[0].tolist()
        order = torch.randperm(len(gen), generator=g).tolist()
        refs[w] = [gen[k] for k in order[:pool]]
        quest[w] = [gen[k] for k in order[pool:]]
        forged[w] = np.nonzero((writer == w) & ~genuine)[0].tolist()
    return refs, quest, forged


def rates(gs, imp):
    s = np.concatenate([gs, imp])
    same = np.r_[np.ones(len(gs), bool), np.zeros(len(imp), bool)]
    eer, _ = metrics.equal_error_rate(s, same)
    frr = 1 - metrics.tar_at_far(s, same, 0.01)
    return eer, frr


def claims_eval(score_fn, writer, genuine, writers, R=5, seed=0):
    """score_fn(ref_idx list, query_idx list) -> (Q,) scores (higher = genuine)."""
    refs, quest, forged = claim_split(writer, genuine, writers, seed=seed)
    out = {"genuine": [], "skilled": [], "random": []}
    for w in sorted(writers):
        others = [i for o in sorted(writers) if o != w for i in quest[o]]
        for kind, idx in (("genuine", quest[w]), ("skilled", forged[w]), ("random", others)):
            out[kind].append(np.asarray(score_fn(w, refs[w][:R], idx)))
    g = np.concatenate(out["genuine"])
    return {k: rates(g, np.concatenate(out[k])) for k in ("skilled", "random")}
