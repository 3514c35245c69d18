"""Experiment (docs/applications.md, faces): warp LFW chips from cached landmarks and score
encoder test-time variants with the LFW protocol (threshold from the other folds).

Reads the npz of ``scripts/lfw_align_variants.py``; for landmark variant ``--variant`` warps
every photo to dlib's 150x150 chip (``twinshot.faces.align``: the 33-point similarity onto
dlib's mean face, padding 0.25; a photo with no face: its centre 120x120 crop, as
``twinshot evaluate lfw`` does), caches the grey chips (``runs/lfw_chips_<variant>.npy``),
and embeds them with the shipped encoder: ``plain``, ``mirror`` (the shipped descriptor) and,
with ``--jitter K``, the mean over the mirror pair plus K deterministic dlib-style jitters
(shift 2%, scale 0.95/1.05, rotation 3 degrees) each with its mirror. Euclidean distance and
cosine scores are both reported.

    PYTHONPATH=src python scripts/lfw_chip_eval.py --variant 1 --json-out runs/faces_lfw.json
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from twinshot.data.images import load_image
from twinshot.evaluation.lfw import lfw_protocol, pair_arrays, read_lfw_pairs
from twinshot.faces.align import PADDING, POINTS, chip_template, similarity_transform, warp_chip
from twinshot.models import load_model

VARIANTS = ("base", "mirror", "mirror5")
#: (dx, dy in fractions of the side, scale, degrees) of the deterministic jitters, in order.
JITTERS = ((0.02, 0.0, 1.0, 3.0), (-0.02, 0.0, 1.0, -3.0), (0.0, 0.02, 1.05, 0.0), (0.0, -0.02, 0.95, 0.0),
           (0.02, 0.02, 1.0, -3.0), (-0.02, -0.02, 1.0, 3.0), (0.0, 0.0, 1.05, 3.0), (0.0, 0.0, 0.95, -3.0))


def chips_for(data, variant: int, fallback, padding: float = PADDING) -> np.ndarray:
    paths = data["paths"].tolist()
    out = np.zeros((len(paths), 150, 150), dtype=np.uint8)
    template = chip_template(150, padding)
    for i, path in enumerate(paths):
        pts = data["landmarks"][i, variant]
        if np.isnan(pts).any():
            out[i] = load_image(path, fallback)[0].numpy()
            continue
        rgb = Image.open(path).convert("RGB")
        if data["border"][i]:
            rgb = ImageOps.expand(rgb, border=int(data["border"][i]), fill=(128, 128, 128))
        chip = warp_chip(rgb, similarity_transform(template, pts[list(POINTS)]), 150)
        out[i] = np.asarray(chip)[:, :, 0]
    return out


def jitter(x: torch.Tensor, dx: float, dy: float, scale: float, deg: float) -> torch.Tensor:
    """Affine-resample ``(B, 3, H, W)`` about the centre (zeros outside), bilinear."""
    a = math.radians(deg)
    theta = torch.tensor([[math.cos(a) / scale, -math.sin(a) / scale, 2 * dx],
                          [math.sin(a) / scale, math.cos(a) / scale, 2 * dy]], dtype=x.dtype)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.no_grad()
def trunk(enc, x: torch.Tensor) -> torch.Tensor:
    """The encoder up to ``conv256_2`` (its last block and ``fc`` left out)."""
    h = F.max_pool2d(F.relu(enc.stem(x - enc.mean)), 3, 2)
    for block in enc.blocks[:-1]:
        h = block(h)
    return h


@torch.no_grad()
def embed(enc, chips: np.ndarray, k: int, trunks: list | None = None) -> np.ndarray:
    """``(N, 2 + 2k, 128)``: plain, mirror, then each jitter and its mirror. ``trunks``
    collects the trunk outputs (up to ``conv256_2``) of the plain and mirror views."""
    outs = []
    for i in range(0, len(chips), 64):
        x = torch.from_numpy(chips[i : i + 64]).float().div(255.0)[:, None].expand(-1, 3, -1, -1).contiguous()
        views = [x, x.flip(3)]
        for j in JITTERS[:k]:
            xj = jitter(x, *j)
            views += [xj, xj.flip(3)]
        b = x.shape[0]
        t = trunk(enc, torch.cat(views, 0))
        if trunks is not None:
            trunks.append(torch.stack([t[:b], t[b : 2 * b]], 1).clone())
        d = enc.blocks[-1](t).mean(dim=(2, 3)) @ enc.fc
        outs.append(d.view(len(views), b, -1).permute(1, 0, 2).numpy())
    return np.concatenate(outs, 0)


def score(emb: np.ndarray, i1, i2, same, fold_of, metric: str) -> dict:
    if metric == "cosine":
        e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        s = (e[i1] * e[i2]).sum(1)
    else:
        s = -np.linalg.norm(emb[i1] - emb[i2], axis=1)
    r = lfw_protocol(s, same, fold_of)
    return {"acc": round(r.accuracy * 100, 3), "se": round(r.standard_error * 100, 3), "eer": round(r.pooled.eer * 100, 3),
            "tar1e-3": round(r.pooled.tar_at_far["1e-3"] * 100, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--landmarks", type=Path, default=Path("runs/lfw_landmarks.npz"))
    ap.add_argument("--pairs", default="../shared/datasets/lfw/pairs_dev.txt")
    ap.add_argument("--variant", type=int, default=0)
    ap.add_argument("--jitter", type=int, default=0)
    ap.add_argument("--json-out", type=Path, help="write the mirror-averaged cosine result (the shipped descriptor and "
                    "head) as `twinshot evaluate lfw --json` does, for make_faces_model.py --lfw")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = dict(np.load(args.landmarks))
    model = load_model("faces")
    fallback = replace(model.preprocessing, align="", crop=0.48)
    chip_file = args.landmarks.parent / f"lfw_chips_{VARIANTS[args.variant]}.npy"
    if chip_file.is_file():
        chips = np.load(chip_file)
    else:
        chips = chips_for(data, args.variant, fallback)
        np.save(chip_file, chips)
    emb_file = args.landmarks.parent / f"lfw_emb_{VARIANTS[args.variant]}_j{args.jitter}.npy"
    if emb_file.is_file():
        views = np.load(emb_file)
    else:
        trunks: list = []
        views = embed(model.encoder, chips, args.jitter, trunks)
        np.save(emb_file, views)
        trunk_file = args.landmarks.parent / f"lfw_trunk_{VARIANTS[args.variant]}.pt"
        if not trunk_file.is_file():
            torch.save(torch.cat(trunks), trunk_file)
    index = {p: i for i, p in enumerate(data["paths"].tolist())}
    i1, i2, same, fold_of = pair_arrays(read_lfw_pairs(args.pairs), index)
    combos = {"plain": views[:, :1], "mirror": views[:, :2]}
    for k in range(1, args.jitter + 1):
        combos[f"mirror+{k}jit"] = views[:, : 2 + 2 * k]
    out = {}
    for name, v in combos.items():
        for metric in ("euclidean", "cosine"):
            out[f"{VARIANTS[args.variant]} {name} {metric}"] = score(v.mean(1), i1, i2, same, fold_of, metric)
    for k, v in out.items():
        print(k, json.dumps(v), flush=True)
    if args.json_out:
        e = views[:, :2].mean(1)
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        r = lfw_protocol((e[i1] * e[i2]).sum(1), same, fold_of)
        res = {"accuracy": r.accuracy, "standard_error": r.standard_error, "auc": r.pooled.auc, "eer": r.pooled.eer,
               "tar_at_far": r.pooled.tar_at_far, "n_pairs": len(pairs), "n_folds": len(folds),
               "n_no_face": int(np.isnan(data["landmarks"][:, args.variant, 0, 0]).sum()),
               "folds": [{"fold": f.fold, "threshold": f.threshold, "accuracy": f.accuracy} for f in r.folds]}
        args.json_out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
