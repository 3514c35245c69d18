"""Experiment (docs/applications.md, faces): a landmark cascade, cross-fitted over LFW's people.

face-api's landmark net sees the crop of the tiny detector's box, which sits loosely and
shifted on the face. A cascade runs the net again on a box built from the first pass's 68
landmarks (:func:`twinshot.faces.align.cascade_box`: the detector's *average* box in the
frame of dlib's mean face, placed by the similarity the landmarks give), so the box the net
sees no longer carries the detector's noise.

Reads the npz of ``scripts/lfw_align_variants.py --pick centre`` (detector boxes and the
shipped mirror-averaged landmarks, variant 1). The two halves of ``pairs_dev.txt`` (folds
1-4, folds 5-8) hold different people; the box mapping used for a half's photos is fitted
(median over photos, no labels) on the *other* half's photos. For each recipe (cascade
passes, box scale ``k``) it saves the landmarks, warps the chips (padding ``--paddings``),
embeds them (mirror-averaged, as the shipped encoder), and scores cosine pairs with the LFW
protocol within each half (threshold from the half's 3 other folds) and over all 8 folds.

    PYTHONPATH=src:scripts python scripts/lfw_cascade.py --landmarks runs/lfw_landmarks_centre.npz \\
        --recipes 1:1.0 2:1.0 1:0.9 1:1.1 --paddings 0.25
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from lfw_chip_eval import chips_for, embed
from twinshot.errors import DataError
from twinshot.evaluation.lfw import lfw_protocol, pair_arrays, read_lfw_pairs
from twinshot.faces.align import box_in_face, box_landmarks, cascade_box, upright_landmarks
from twinshot.models import load_model


def photo_halves(folds, paths: list[str]) -> np.ndarray:
    """0 for a photo of folds 1-4, 1 for folds 5-8 (LFW's folds are person-disjoint)."""
    half = {}
    for k, fold in enumerate(folds):
        for p in fold:
            half[os.fspath(p.path1)] = half[os.fspath(p.path2)] = int(k >= 4)
    return np.array([half[p] for p in paths])


def score(emb: np.ndarray, i1, i2, same, fold_of) -> dict:
    e = emb.mean(1)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    s = (e[i1] * e[i2]).sum(1)
    out = {}
    for name, mask in (("A(1-4)", fold_of < 4), ("B(5-8)", fold_of >= 4), ("all8", np.ones_like(same))):
        r = lfw_protocol(s[mask], same[mask], fold_of[mask])
        out[name] = {"acc": round(100 * r.accuracy, 3), "se": round(100 * r.standard_error, 3), "eer": round(100 * r.pooled.eer, 3),
                     "auc": round(r.pooled.auc, 5), "tar1e-3": round(100 * r.pooled.tar_at_far["1e-3"], 2),
                     "errors": int(round((1 - r.accuracy) * mask.sum())), "folds": [round(100 * f.accuracy, 2) for f in r.folds]}
    return out


def run_padding(name: str, marks: np.ndarray, pad: float, data: dict, fallback, model, out_dir: Path, pairs) -> dict:
    """Warp the chips of ``marks`` ``(N, 68, 2)`` with ``pad``, embed them (cached) and score."""
    emb_file = out_dir / f"emb_{name}.npy"
    if emb_file.is_file():
        emb = np.load(emb_file)
    else:
        chips = chips_for({"paths": data["paths"], "border": data["border"], "landmarks": marks[:, None]}, 0, fallback, padding=pad)
        with torch.no_grad():
            emb = embed(model.encoder, chips, 0)
        np.save(emb_file, emb)
    res = score(emb, *pairs)
    print(name, json.dumps(res), flush=True)
    return {name: res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--landmarks", type=Path, default=Path("runs/lfw_landmarks_centre.npz"))
    ap.add_argument("--pairs", default="../shared/datasets/lfw/pairs_dev.txt")
    ap.add_argument("--recipes", nargs="*", default=["1:1.0"], help="PASSES[u]:K[:CX] (u: upright crops; K scales the box's width and height; CX replaces its centre x, "
                    "e.g. 0.49, the mean face's centre); 0:1 = shipped")
    ap.add_argument("--paddings", nargs="+", type=float, default=[0.25])
    ap.add_argument("--out-dir", type=Path, default=Path("runs/cascade"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    data = dict(np.load(args.landmarks))
    paths = data["paths"].tolist()
    folds = read_lfw_pairs(args.pairs)
    half = photo_halves(folds, paths)
    first = data["landmarks"][:, 1]  # the shipped mirror-averaged landmarks of the detector box
    ok = ~np.isnan(first[:, 0, 0])
    rel = np.full((len(paths), 4), np.nan)
    for i in np.flatnonzero(ok):
        rel[i] = box_in_face(first[i], data["box"][i])
    fitted = {h: np.median(rel[ok & (half == h)], 0) for h in (0, 1)}
    for h in (0, 1):
        print(f"detector box in the mean face, fitted on half {h} photos: {np.round(fitted[h], 4).tolist()} "
              f"(IQR {np.round(np.subtract(*np.percentile(rel[ok & (half == h)], [75, 25], 0)), 4).tolist()})", flush=True)
    model = load_model("faces")
    fallback = replace(model.preprocessing, align="", crop=0.48)
    index = {p: i for i, p in enumerate(paths)}
    i1, i2, same, fold_of = pair_arrays(folds, index)
    results = {}
    for recipe in ["0:1"] + [r for r in args.recipes if r != "0:1"]:
        if recipe.startswith("avg:"):  # avg:TAG+TAG: the mean of two saved recipes' landmarks (p0k1: the shipped ones)
            tags = recipe[4:].split("+")
            marks = np.mean([first if t == "p0k1" else np.load(args.out_dir / f"landmarks_{t}.npy") for t in tags], 0)
            tag = "avg_" + "+".join(tags)
            parts = None
        else:
            parts = recipe.split(":")
        for pad in (args.paddings if parts is None else []):
            results.update(run_padding(f"{tag}_pad{pad:g}", marks, pad, data, fallback, model, args.out_dir, (i1, i2, same, fold_of)))
        if parts is None:
            continue
        upright = parts[0].endswith("u")  # twinshot.faces.align.upright_landmarks: the crop turned with the face
        passes, k = int(parts[0].rstrip("u")), float(parts[1])
        cx = float(parts[2]) if len(parts) > 2 else None  # the box's centre x in the mean face, instead of the fitted one
        tag = f"p{passes}{'u' if upright else ''}k{k:g}" + (f"x{cx:g}" if cx is not None else "")
        mark_file = args.out_dir / f"landmarks_{tag}.npy"
        if passes == 0:
            marks = first
        elif mark_file.is_file():
            marks = np.load(mark_file)
        else:
            marks = np.full_like(first, np.nan)
            with torch.no_grad():
                for i in np.flatnonzero(ok):
                    rgb = Image.open(paths[i]).convert("RGB")
                    if data["border"][i]:
                        rgb = ImageOps.expand(rgb, border=int(data["border"][i]), fill=(128, 128, 128))
                    arr = np.asarray(rgb, dtype=np.uint8)
                    b = fitted[1 - half[i]] * (1, 1, k, k)  # the other half's box mapping
                    if cx is not None:
                        b[0] = cx
                    pts = first[i]
                    for _ in range(passes):
                        if upright:
                            pts = upright_landmarks(rgb, pts, tuple(b))
                        else:
                            try:
                                pts = box_landmarks(arr, cascade_box(pts, tuple(b)), name=paths[i])
                            except DataError:  # as detect_and_align: keep the last landmarks
                                print("cascade box left the photo:", paths[i], flush=True)
                                break
                    marks[i] = pts
            np.save(mark_file, marks)
        for pad in args.paddings:
            results.update(run_padding(f"{tag}_pad{pad:g}", marks, pad, data, fallback, model, args.out_dir, (i1, i2, same, fold_of)))
    out = args.out_dir / "results.json"
    merged = {**(json.loads(out.read_text()) if out.is_file() else {}), **results}
    out.write_text(json.dumps(merged, indent=1) + "\n")


if __name__ == "__main__":
    main()
