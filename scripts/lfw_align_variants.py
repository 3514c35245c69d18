"""Experiment (docs/applications.md, faces): landmark variants for the alignment of LFW photos.

For every distinct photo of a pairs file, runs the tiny face detector once (as
:func:`twinshot.faces.align.detect_and_align` does: sides 320/416/224/160, then with a grey
border; ``--pick``: the largest face or, as ``twinshot evaluate lfw`` does, the face at the
centre; :func:`twinshot.faces.align.find_face`) and face-api's 68-point landmark net on the
detector box in three ways:

* ``base``: once on the box (what the shipped ``faces`` model does);
* ``mirror``: the mean of the box and its mirror image (points un-mirrored by the iBUG
  68-point left/right permutation);
* ``mirror5``: the mean over the box and four boxes shifted by 4% of its side (left, right,
  up, down), each with its mirror: 10 passes.

Saves ``--out`` (npz): ``paths``, ``border`` (0 or the grey border used), ``box`` ``(N, 4)``
and ``landmarks`` ``(N, 3, 68, 2)`` in the coordinates of the (bordered) photo; NaN where no
face was found. ``scripts/lfw_chip_eval.py`` warps and scores them.

    python scripts/lfw_align_variants.py --out runs/lfw_landmarks.npz
    python scripts/lfw_align_variants.py --pick centre --skip-mirror5 --out runs/lfw_landmarks_centre.npz
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from twinshot.evaluation.lfw import read_lfw_pairs
from twinshot.faces.align import NoFaceError, _models, find_face

#: iBUG 68-point index of each point's mirror image.
FLIP68 = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65]
)


def crop_points(marker, arr: np.ndarray, box: tuple[float, float, float, float], mirror: bool) -> np.ndarray:
    height, width = arr.shape[:2]
    bx, by, bw, bh = box
    x0, y0 = max(bx, 0.0), max(by, 0.0)
    x1, y1 = min(bx + bw, float(width)), min(by + bh, float(height))
    left, top, w, h = int(np.floor(x0)), int(np.floor(y0)), int(np.floor(x1 - x0)), int(np.floor(y1 - y0))
    crop = arr[top : top + h, left : left + w]
    if not mirror:
        return marker.landmarks(crop) + (left, top)
    pts = marker.landmarks(np.ascontiguousarray(crop[:, ::-1]))
    pts[:, 0] = w - pts[:, 0]  # pixel-edge convention: x -> w - x
    return pts[FLIP68] + (left, top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default="../shared/datasets/lfw/pairs_dev.txt")
    ap.add_argument("--out", type=Path, default=Path("runs/lfw_landmarks.npz"))
    ap.add_argument("--pick", choices=("largest", "centre"), default="largest",
                    help="which face (twinshot.faces.align.find_face): the model's own, or LFW's centred person")
    ap.add_argument("--skip-mirror5", action="store_true", help="leave variant 2 (10 passes) NaN")
    args = ap.parse_args()
    torch.set_num_threads(1)
    _, marker = _models()
    folds = read_lfw_pairs(args.pairs)
    paths = list(dict.fromkeys(os.fspath(q) for f in folds for p in f for q in (p.path1, p.path2)))
    n = len(paths)
    border = np.zeros(n, dtype=np.int32)
    boxes = np.full((n, 4), np.nan)
    marks = np.full((n, 3, 68, 2), np.nan)
    t0 = time.time()
    with torch.no_grad():
        for i, path in enumerate(paths):
            if i % 250 == 0:
                print(f"{i}/{n} {time.time() - t0:.0f}s", flush=True)
            try:
                found = find_face(Image.open(path), name=path, pick=args.pick)
            except NoFaceError:
                continue
            b, arr = found.box, found.arr
            border[i] = found.border
            box = (b.x, b.y, b.width, b.height)
            boxes[i] = box
            base = crop_points(marker, arr, box, False)
            mir = crop_points(marker, arr, box, True)
            marks[i, 0] = base
            marks[i, 1] = (base + mir) / 2
            if args.skip_mirror5:
                continue
            many = [base, mir]
            d = 0.04 * max(b.width, b.height)
            for dx, dy in ((-d, 0), (d, 0), (0, -d), (0, d)):
                sb = (b.x + dx, b.y + dy, b.width, b.height)
                many += [crop_points(marker, arr, sb, False), crop_points(marker, arr, sb, True)]
            marks[i, 2] = np.mean(many, 0)
    np.savez(args.out, paths=np.array(paths), border=border, box=boxes, landmarks=marks)
    print("done", time.time() - t0)


if __name__ == "__main__":
    main()
