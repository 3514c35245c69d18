"""Within-class whitening (WCCN) and LDA on the shipped ``faces`` descriptor, cross-fitted on
LFW people (docs/applications.md, "Within-class whitening of the descriptor (session 11)").

Every pair of fold k is scored by the cosine after a projection fitted on the photos of the
people who are in no pair of fold k (the other folds' people and those in no pair); then the
standard protocol: fold k's threshold from the other folds' pairs, each scored by its own
fold-excluded projection. Hyperparameters: chosen on folds 1-4 (fewest errors, ties: the
first in grid order) and reported on 5-8, and vice versa; the 8-fold figure is the two
reported halves together.

    PYTHONPATH=src python scripts/lfw_wccn.py --embeddings runs/lfw_all_faces.npz --out runs/wccn.json

With ``--fit-all KIND:PARAMS`` (e.g. ``wccn:reg=0.1,centre=0``) it fits that projection on
every photo of the file and writes ``--matrix-out`` (``mean``, ``matrix``) instead.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path

import numpy as np

from twinshot.evaluation.lfw import lfw_protocol, pair_arrays, read_lfw_pairs
from twinshot.evaluation.verification import verification_metrics
from twinshot.models.projection import LinearProjection, lda, wccn

REGS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
DIMS = (32, 48, 64, 96, 112)
HALVES = ((0, 1, 2, 3), (4, 5, 6, 7))


def grid() -> list[dict]:
    out: list[dict] = [{"kind": "none"}]
    out += [{"kind": "wccn", "reg": r, "centre": c} for c, r in itertools.product((False, True), REGS[::-1])]
    out += [{"kind": "lda", "dim": d, "reg": r, "centre": c} for c, d, r in itertools.product((False, True), DIMS[::-1], REGS[::-1])]
    return out


def fit(cfg: dict, x: np.ndarray, labels: np.ndarray) -> LinearProjection | None:
    if cfg["kind"] == "none":
        return None
    if cfg["kind"] == "wccn":
        return wccn(x, labels, reg=cfg["reg"], centre=cfg["centre"])
    return lda(x, labels, dim=cfg["dim"], reg=cfg["reg"], centre=cfg["centre"])


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fold_scores(cfg: dict, x: np.ndarray, person: np.ndarray, fold_people: list[set], i1, i2, same, fold_of) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's cosine after its fold-excluded projection ``(P,)`` and the errors per fold."""
    scores = np.zeros(len(same))
    for k, people in enumerate(fold_people):
        train = ~np.isin(person, list(people))
        proj = fit(cfg, x[train], person[train])
        z = normalise(x if proj is None else proj.project(x))
        m = fold_of == k
        scores[m] = np.sum(z[i1[m]] * z[i2[m]], axis=1)
    res = lfw_protocol(scores, same, fold_of)
    return scores, np.array([round(f.n_pairs * (1 - f.accuracy)) for f in res.folds])


def summary(errors: np.ndarray, n: int = 600) -> dict:
    acc = 1 - errors / n
    se = acc.std(ddof=1) / np.sqrt(len(acc)) if len(acc) > 1 else float("nan")
    return {"errors": int(errors.sum()), "accuracy": float(acc.mean()), "se": float(se), "per_fold": errors.tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embeddings", type=Path, default=Path("runs/lfw_all_faces.npz"))
    ap.add_argument("--pairs", default="../shared/datasets/lfw/pairs_dev.txt")
    ap.add_argument("--out", type=Path, default=Path("runs/wccn.json"))
    ap.add_argument("--fit-all", default=None)
    ap.add_argument("--matrix-out", type=Path, default=Path("runs/faces_projection.npz"))
    args = ap.parse_args()
    data = np.load(args.embeddings)
    x = normalise(data["embeddings"].astype(np.float64))
    person = data["person"]
    if args.fit_all:
        kind, _, params = args.fit_all.partition(":")
        cfg: dict = {"kind": kind}
        for item in filter(None, params.split(",")):
            k, v = item.split("=")
            cfg[k] = bool(int(v)) if k == "centre" else int(v) if k == "dim" else float(v)
        proj = fit(cfg, x, person)
        assert proj is not None
        np.savez(args.matrix_out, mean=proj.mean.astype(np.float32), matrix=proj.matrix.astype(np.float32))
        print(json.dumps({"fitted": cfg, "photos": len(x), "out": str(args.matrix_out)}))
        return
    folds = read_lfw_pairs(args.pairs)
    index = {p: i for i, p in enumerate(data["paths"].tolist())}
    i1, i2, same, fold_of = pair_arrays(folds, index)
    fold_people = [{os.path.basename(os.path.dirname(os.fspath(q))) for p in f for q in (p.path1, p.path2)} for f in folds]
    rows, scores = [], []
    for cfg in grid():
        sc, errs = fold_scores(cfg, x, person, fold_people, i1, i2, same, fold_of)
        rows.append({"cfg": cfg, "per_fold": errs.tolist()})
        scores.append(sc)
        print(json.dumps(rows[-1]), flush=True)
    report: dict = {"grid": rows, "families": {}}
    for family in ("none", "wccn", "lda"):
        cand = [r for r in rows if r["cfg"]["kind"] == family]
        per_half, chosen = [], []
        pooled = []
        for h, other in ((0, 1), (1, 0)):
            # choose on the other half, report on this one
            best = min(cand, key=lambda r: sum(r["per_fold"][k] for k in HALVES[other]))
            chosen.append(best["cfg"])
            per_half.append(np.array([best["per_fold"][k] for k in HALVES[h]]))
            m = np.isin(fold_of, HALVES[h])  # one setting per half: its scores pool
            vm = verification_metrics(scores[rows.index(best)][m], same[m]).to_dict()
            pooled.append({k: vm[k] for k in ("auc", "eer", "tar_at_far")})
        report["families"][family] = {
            "folds 1-4 (chosen on 5-8)": {"cfg": chosen[0], **summary(per_half[0])},
            "folds 5-8 (chosen on 1-4)": {"cfg": chosen[1], **summary(per_half[1])},
            "8 folds (cross-fitted halves)": summary(np.concatenate(per_half)),
            "pooled within folds 1-4, 5-8": pooled,
            "chosen on all 8 (for the shipped fit)": min(cand, key=lambda r: sum(r["per_fold"]))["cfg"],
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["families"], indent=1))


if __name__ == "__main__":
    main()
