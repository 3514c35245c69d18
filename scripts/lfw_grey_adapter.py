"""Experiment (docs/applications.md, faces): grey-to-colour input maps and contrast
normalisation of grey LFW chips, cross-fitted over people.

Reads the chips of ``scripts/lfw_centre_chips.py`` (the shipped ``faces`` alignment, the face
at the centre). The people of a pairs file's folds are split in two halves (folds 1-4 and
5-8 of ``pairs_dev.txt``; LFW's folds are person-disjoint). For each half, the map is fitted
on the photos of the *other* half's people with the encoder frozen, and the half's pairs are
scored with the mirror-averaged descriptor and a cosine, threshold from the other 3 folds of
the half (as ``scripts/lfw_loss_compare.py``); the 8 fold accuracies are pooled.

Inputs (``--input``), applied to the uint8 grey chip before the map:

* ``plain``: the grey value (what ``faces`` does);
* ``equalize``: PIL's histogram equalisation of the chip;
* ``stdz``: each chip standardised to the mean and std of the fitting half's chips.

Maps (``--fit``): ``none`` (the copy to three channels); ``affine`` (``(R, G, B) = gain * Y +
offset``, :class:`twinshot.faces.grey.GreyToColour`): Adam on a logistic pair loss over the
cosine (its scale and threshold learned too), batches of ``--people`` people x 2 photos plus
as many single photos of other people, a random mirror per photo, ``--steps`` steps.
``stem`` / ``net``: the first conv (+ its scale) or every weight of the encoder fine-tuned
instead, with the same loss plus ``--alpha * ||w - w0||^2`` toward the pretrained weights
(L2-SP), Adam at ``--lr``. ``--fit-on CHIPS``: fit once on the photos of another chips file (the LFW people outside
``pairs_dev.txt``) and score all 8 folds with that one map. Every run also scores the pooled
descriptors (each photo embedded by a map fitted on other people) with the official protocol
(threshold from the other 7 folds: ``all_folds``); ``--rescore EMB.npy`` repeats that on
descriptors saved by ``--save-emb``. Results are appended to ``--log`` (JSON lines).

    PYTHONPATH=src python scripts/lfw_grey_adapter.py --input plain --fit affine --steps 120
    PYTHONPATH=src python scripts/lfw_grey_adapter.py --fit net --lr 1e-5 --alpha 1 --steps 80
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from twinshot.evaluation.lfw import lfw_protocol, pair_arrays, read_lfw_pairs
from twinshot.faces.grey import GreyToColour
from twinshot.faces.resnet import FaceResNet


def transform(chips: np.ndarray, kind: str, ref: np.ndarray | None = None) -> np.ndarray:
    """uint8 ``(N, 150, 150)`` grey chips -> float32 in the 0-1 range (``stdz`` may leave it)."""
    if kind == "plain":
        return chips.astype(np.float32) / 255.0
    if kind == "equalize":
        return np.stack([np.asarray(ImageOps.equalize(Image.fromarray(c))) for c in chips]).astype(np.float32) / 255.0
    if kind == "stdz":
        x = chips.astype(np.float32) / 255.0
        m, s = float(ref.mean()) / 255.0, float(ref.std()) / 255.0
        mu, sd = x.mean(axis=(1, 2), keepdims=True), x.std(axis=(1, 2), keepdims=True)
        return (x - mu) / np.maximum(sd, 1e-3) * s + m
    raise ValueError(kind)


@torch.no_grad()
def embed(enc: FaceResNet, x: np.ndarray, adapter: GreyToColour, batch: int = 32) -> np.ndarray:
    """Mirror-averaged descriptors ``(N, 128)`` of grey float chips ``(N, 150, 150)``."""
    out = []
    for i in range(0, len(x), batch):
        t = torch.from_numpy(x[i : i + batch])[:, None].expand(-1, 3, -1, -1)
        out.append(enc(adapter(t)).numpy())
    return np.concatenate(out)


def fit(
    enc: FaceResNet, x: np.ndarray, person: np.ndarray, steps: int, people: int, lr: float, seed: int,
    scope: str = "affine", alpha: float = 0.0, average: float = 0.0,
) -> tuple[list, list, list]:
    """Fit on grey float chips ``x`` of ``person`` ids. ``scope``: ``affine`` (gain and
    offset, encoder frozen), ``stem`` (the first conv + scale) or ``net`` (every weight); the
    latter two change ``enc`` in place, pulled toward the pretrained weights by
    ``alpha * ||w - w0||^2`` (L2-SP). With ``average`` > 0 the map returned is the mean
    over that last fraction of the steps (Polyak). Returns gain, offset and the loss trace."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    person = np.unique(person, return_inverse=True)[1]
    groups = {}
    for i, p in enumerate(person):
        groups.setdefault(p, []).append(i)
    multi = [v for v in groups.values() if len(v) >= 2]
    gain = torch.ones(3, requires_grad=scope == "affine")
    offset = torch.zeros(3, requires_grad=scope == "affine")
    log_s = torch.tensor(np.log(40.0), dtype=torch.float32, requires_grad=True)
    t = torch.tensor(0.9, requires_grad=True)
    weights = [] if scope == "affine" else list((enc.stem if scope == "stem" else enc).parameters())
    start = [w.detach().clone() for w in weights]
    for w in weights:
        w.requires_grad_(True)
    groups_ = [{"params": [gain, offset] if scope == "affine" else weights, "lr": lr}, {"params": [log_s, t], "lr": 0.02}]
    opt = torch.optim.Adam(groups_)
    trace, kept = [], []
    for step in range(steps):
        chosen = rng.choice(len(multi), people, replace=False)
        idx = [j for c in chosen for j in rng.choice(multi[c], 2, replace=False)]
        taken = {person[j] for j in idx}
        singles = [j for j in rng.permutation(len(x))[: people * 3] if person[j] not in taken][:people]
        idx += singles
        ids = torch.as_tensor(person[idx].astype(np.int64))
        xb = torch.from_numpy(x[idx])[:, None]
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
        xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
        rgb = xb * gain.view(1, 3, 1, 1) + offset.view(1, 3, 1, 1)
        d = F.normalize(enc.descriptor(rgb), dim=1)
        cos = d @ d.T
        same = ids[:, None] == ids[None, :]
        upper = torch.triu(torch.ones_like(same), 1)
        logit = log_s.exp() * (cos - t)
        pos, neg = same & upper, ~same & upper
        loss = F.softplus(-logit[pos]).mean() + F.softplus(logit[neg]).mean()
        if weights and alpha:
            loss = loss + alpha * sum(((w - w0) ** 2).sum() for w, w0 in zip(weights, start))
        opt.zero_grad()
        loss.backward()
        opt.step()
        trace.append(float(loss.detach()))
        if step >= steps * (1 - average):
            kept.append(torch.cat([gain.detach(), offset.detach()]))
        if step % 25 == 0 or step == steps - 1:
            moved = sum(float(((w - w0) ** 2).sum()) for w, w0 in zip(weights, start)) ** 0.5
            print(f"  step {step} loss {np.mean(trace[-25:]):.4f} gain {gain.detach().numpy().round(3).tolist()} "
                  f"offset {offset.detach().numpy().round(3).tolist()} moved {moved:.4f}", flush=True)
    for w in weights:
        w.requires_grad_(False)
    if kept:  # Polyak: the mean of the map over the last steps
        mean = torch.stack(kept).mean(0)
        return mean[:3].tolist(), mean[3:].tolist(), trace
    return gain.detach().tolist(), offset.detach().tolist(), trace


def score_half(emb: np.ndarray, index: dict, folds: list, which: list[int]) -> dict:
    i1, i2, same, fold_of = pair_arrays([folds[k] for k in which], index)
    u = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    r = lfw_protocol((u[i1] * u[i2]).sum(1), same, fold_of)
    return {"acc": 100 * r.accuracy, "se": 100 * r.standard_error, "eer": 100 * r.pooled.eer, "auc": r.pooled.auc, "tar1e-3": 100 * r.pooled.tar_at_far["1e-3"],
            "folds": [round(100 * f.accuracy, 2) for f in r.folds]}


def score_all(emb: np.ndarray, index: dict, folds: list) -> dict:
    """The official protocol over all folds of the pooled (cross-fitted) descriptors: threshold
    from the other folds (7 of 8), as ``twinshot evaluate lfw``."""
    r = score_half(emb, index, folds, list(range(len(folds))))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}


def pooled(results: list[dict]) -> dict:
    accs = np.array([a for r in results for a in r["folds"]])
    return {"acc": round(float(accs.mean()), 3), "se": round(float(accs.std(ddof=1) / np.sqrt(len(accs))), 3),
            "halves": [round(r["acc"], 3) for r in results], "eer": [round(r["eer"], 2) for r in results],
            "tar1e-3": [round(r["tar1e-3"], 2) for r in results], "folds": [a for r in results for a in r["folds"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=Path, default=Path("runs/lfw_chips_centre.npz"))
    ap.add_argument("--pairs", default="../shared/datasets/lfw/pairs_dev.txt")
    ap.add_argument("--input", default="plain", choices=("plain", "equalize", "stdz"))
    ap.add_argument("--fit", default="none", choices=("none", "affine", "stem", "net", "given"))
    ap.add_argument("--average", type=float, default=0.0, help="--fit affine: return the mean map over this last fraction of steps")
    ap.add_argument("--alpha", type=float, default=0.0, help="L2-SP weight for --fit stem/net")
    ap.add_argument("--gain", type=float, nargs=3, default=(1.0, 1.0, 1.0), help="with --fit given")
    ap.add_argument("--offset", type=float, nargs=3, default=(0.0, 0.0, 0.0), help="with --fit given")
    ap.add_argument("--fit-on", type=Path, help="fit once on this chips npz (other people) instead of cross-fitting")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--people", type=int, default=12)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-emb", type=Path)
    ap.add_argument("--rescore", type=Path, help="only score these saved descriptors (--save-emb) over all folds")
    ap.add_argument("--log", type=Path, default=Path("runs/grey_adapter.jsonl"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    enc = FaceResNet(mirror=True).eval().requires_grad_(False)
    pretrained = {k: v.clone() for k, v in enc.state_dict().items()}
    data = np.load(args.chips)
    paths = data["paths"].tolist()
    chips = data["chips"]
    index = {p: i for i, p in enumerate(paths)}
    folds = read_lfw_pairs(args.pairs)
    fold_of_photo = np.full(len(paths), -1)
    for k, f in enumerate(folds):
        for p in f:
            fold_of_photo[index[os.fspath(p.path1)]] = k
            fold_of_photo[index[os.fspath(p.path2)]] = k
    names = np.array([os.path.basename(os.path.dirname(p)) for p in paths])
    if args.rescore:
        print(json.dumps({"rescore": os.fspath(args.rescore), **score_all(np.load(args.rescore), index, folds)}))
        return
    halves = [list(range(0, len(folds) // 2)), list(range(len(folds) // 2, len(folds)))]
    emb = np.zeros((len(paths), 128), dtype=np.float32)
    results, fits = [], []
    t0 = time.time()
    if args.fit_on is not None:
        other = np.load(args.fit_on)
        ochips = other["chips"]
        oper = np.array([os.path.basename(os.path.dirname(p)) for p in other["paths"].tolist()])
        xo = transform(ochips, args.input, ochips)
        gain, offset, trace = fit(enc, xo, oper, args.steps, args.people, args.lr, args.seed, args.fit, args.alpha, args.average)
        fits.append({"gain": gain, "offset": offset, "loss_first": float(np.mean(trace[:25])), "loss_last": float(np.mean(trace[-25:]))})
        emb = embed(enc, transform(chips, args.input, ochips), GreyToColour(gain, offset))
        results = [score_half(emb, index, folds, h) for h in halves]
    else:
        for judged, fitted in ((halves[1], halves[0]), (halves[0], halves[1])):
            fit_mask = np.isin(fold_of_photo, fitted)
            judge_mask = np.isin(fold_of_photo, judged)
            ref = chips[fit_mask]
            adapter = GreyToColour()
            if args.fit in ("stem", "net"):
                enc.load_state_dict(pretrained)
            if args.fit in ("affine", "stem", "net"):
                gain, offset, trace = fit(enc, transform(ref, args.input, ref), names[fit_mask], args.steps, args.people, args.lr,
                                          args.seed, args.fit, args.alpha, args.average)
                fits.append({"fitted_on_folds": [k + 1 for k in fitted], "gain": gain, "offset": offset,
                             "loss_first": float(np.mean(trace[:25])), "loss_last": float(np.mean(trace[-25:]))})
                adapter = GreyToColour(gain, offset)
            elif args.fit == "given":
                adapter = GreyToColour(args.gain, args.offset)
            emb[judge_mask] = embed(enc, transform(chips[judge_mask], args.input, ref), adapter)
            results.append(score_half(emb, index, folds, judged))
            print(f"  folds {[k + 1 for k in judged]}: {results[-1]} ({time.time() - t0:.0f}s)", flush=True)
        results = results[::-1]  # folds 1-4 first
    out = {"input": args.input, "fit": args.fit, "fit_on": os.fspath(args.fit_on) if args.fit_on else "cross",
           "steps": args.steps, "people": args.people, "lr": args.lr, "alpha": args.alpha, "average": args.average, "seed": args.seed, **pooled(results), "fits": fits,
           "seconds": round(time.time() - t0)}
    out["all_folds"] = score_all(emb, index, folds)
    if args.fit == "given":
        out.update(gain=list(args.gain), offset=list(args.offset))
    print(json.dumps(out), flush=True)
    with open(args.log, "a") as fh:
        fh.write(json.dumps(out) + "\n")
    if args.save_emb:
        np.save(args.save_emb, emb)


if __name__ == "__main__":
    main()
