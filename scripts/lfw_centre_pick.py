"""Experiment (docs/applications.md, faces): LFW's labelled face is the one at the centre.

The shipped ``faces`` preprocessing (``align = "face-api"``) keeps the largest face of the
first detector side (320, 416, 224, 160) that finds any; in a crowded LFW photo that can be
a bystander when the subject is found only at another side. ``align = "face-api-centre"``
tries the sides until one finds a face covering the photo's centre (LFW photos are centred
on their subject) and keeps the face nearest the centre.

Reads the boxes of ``scripts/lfw_align_variants.py`` (the largest face of the first side
that found any), re-aligns with ``"face-api-centre"`` every photo whose box does not cover
its centre, embeds those with the shipped model, replaces their rows in the embeddings that
``twinshot evaluate lfw faces ... --cache DIR`` keeps (same photo order), saves the result
(``--out``: ``embeddings``, the re-aligned ``changed`` paths and their grey ``chips``) and scores both with the LFW protocol (cosine, threshold from the other folds).

    PYTHONPATH=src python scripts/lfw_centre_pick.py --cache runs/cache-v2/embeddings-*.npz \
        --out runs/lfw_emb_centre.npz
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from twinshot.data.images import load_image
from twinshot.evaluation.lfw import lfw_protocol, pair_arrays, read_lfw_pairs
from twinshot.faces.align import NoFaceError
from twinshot.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--landmarks", type=Path, default=Path("runs/lfw_landmarks.npz"))
    ap.add_argument("--pairs", default="../shared/datasets/lfw/pairs_dev.txt")
    ap.add_argument("--cache", type=Path, required=True, help="embeddings npz of `twinshot evaluate lfw faces --cache`")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = np.load(args.landmarks)
    paths, border, box = data["paths"].tolist(), data["border"], data["box"]
    with np.load(args.cache) as c:
        emb0 = c["embeddings"].copy()
    model = load_model("faces")
    centre = replace(model.preprocessing, align="face-api-centre")
    emb = emb0.copy()
    changed, chips = [], []
    for i, path in enumerate(paths):
        if np.isnan(box[i]).any():
            continue
        w, h = Image.open(path).size
        cx, cy = w / 2 + border[i], h / 2 + border[i]
        x, y, bw, bh = box[i]
        if x <= cx <= x + bw and y <= cy <= y + bh:
            continue
        try:
            chip = load_image(path, centre)
        except NoFaceError:
            continue
        with torch.no_grad():
            emb[i] = model.embed_images(chip[None])[0].numpy()
        changed.append(path)
        chips.append(chip[0].numpy())
        print("re-aligned", path, flush=True)
    np.savez(args.out, embeddings=emb, changed=np.array(changed), chips=np.array(chips, dtype=np.uint8).reshape(-1, 150, 150))
    index = {p: i for i, p in enumerate(paths)}
    folds = read_lfw_pairs(args.pairs)
    pairs = [p for f in folds for p in f]
    i1, i2, same, fold_of = pair_arrays(folds, index)
    for name, e in (("largest (shipped)", emb0), ("centre", emb)):
        u = e / np.linalg.norm(e, axis=1, keepdims=True)
        r = lfw_protocol((u[i1] * u[i2]).sum(1), same, fold_of)
        print(name, json.dumps({"acc": round(100 * r.accuracy, 3), "se": round(100 * r.standard_error, 3),
                                "eer": round(100 * r.pooled.eer, 3), "auc": round(r.pooled.auc, 5),
                                "tar1e-3": round(100 * r.pooled.tar_at_far["1e-3"], 2),
                                "folds": [round(100 * f.accuracy, 2) for f in r.folds]}))
    print(f"{len(changed)} photos re-aligned, {sum(os.fspath(p.path1) in set(changed) or os.fspath(p.path2) in set(changed) for p in pairs)} pairs touched")


if __name__ == "__main__":
    main()
