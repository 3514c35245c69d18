"""Experiment (docs/applications.md, faces): cache the aligned 150x150 chips of LFW photos.

Aligns every distinct photo of a pairs file exactly as ``twinshot evaluate lfw faces PAIRS``
does (the shipped ``faces`` preprocessing, the face at the photo's centre: ``--face centre``;
a photo with no face: its centre 120x120 crop, ``--fallback-crop 0.48``) and saves the
uint8 chips, so experiments on the encoder's input (``scripts/lfw_grey_adapter.py``) are one
embedding pass each. Several pairs files (or ``path1,path2,same`` CSVs) may be given; their
photos are pooled.

Saves ``--out`` (npz): ``paths`` ``(N,)``, ``chips`` ``(N, 150, 150)`` uint8 (the grey
value; LFW here is greyscale, so the three channels are equal) and ``no_face`` ``(N,)`` bool.

    PYTHONPATH=src python scripts/lfw_centre_chips.py --out runs/lfw_chips_centre.npz
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from twinshot.data.images import load_image
from twinshot.evaluation.lfw import lfw_preprocessing, read_lfw_pairs
from twinshot.faces.align import NoFaceError
from twinshot.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", nargs="+", default=["../shared/datasets/lfw/pairs_dev.txt"])
    ap.add_argument("--out", type=Path, default=Path("runs/lfw_chips_centre.npz"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model("faces")
    prep = lfw_preprocessing(model.preprocessing, "centre")
    fallback = replace(prep, align="", crop=0.48)
    paths = list(dict.fromkeys(os.fspath(q) for pf in args.pairs for f in read_lfw_pairs(pf) for p in f for q in (p.path1, p.path2)))
    chips = np.zeros((len(paths), 150, 150), dtype=np.uint8)
    no_face = np.zeros(len(paths), dtype=bool)
    t0 = time.time()
    for i, path in enumerate(paths):
        try:
            chip = load_image(path, prep)
        except NoFaceError:
            no_face[i] = True
            chip = load_image(path, fallback)
        chips[i] = chip[0].numpy()
        if i % 250 == 0:
            print(f"{i}/{len(paths)} {time.time() - t0:.0f}s", flush=True)
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    np.savez(tmp, paths=np.array(paths), chips=chips, no_face=no_face)
    os.replace(tmp, args.out)
    print("done", len(paths), "photos,", int(no_face.sum()), "no face,", f"{time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
