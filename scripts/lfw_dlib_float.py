"""Experiment (docs/applications.md, faces): face-api's uint8-quantised dlib ResNet against
dlib's own float weights, on the same LFW chips.

Reads an npz of cached 150x150 grey chips (``paths``, ``chips``: the chips ``twinshot
evaluate lfw faces`` embeds, e.g. session 7's ``lfw_chips_centre.npz``). Scores, each
mirror-averaged and by cosine, with the LFW protocol (threshold from the other folds) over
the 8 folds and within each half (folds 1-4, 5-8: other people; threshold from the half's
other 3 folds):

* ``port (face-api uint8)``: the shipped encoder (cached next to ``--out``);
* ``port, dlib float weights`` (``--dat dlib_face_recognition_resnet_model_v1.dat``): the same
  port with dlib's float weights read by ``scripts/dlib_dat.py`` (cached next to ``--out``);
* ``dlib-bin`` (``--dlib FILE.npy``): dlib's own descriptors of the chips and their mirrors
  from ``scripts/dlib_reference_embed.py`` (run with a Python that has dlib-bin);

and compares the descriptors of every set with the first (max abs difference, cosine).

    PYTHONPATH=src:scripts python scripts/lfw_dlib_float.py --chips runs/lfw_chips_centre.npz \\
        --dat /tmp/frm/.../dlib_face_recognition_resnet_model_v1.dat --dlib runs/dlib_centre.npy
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from dlib_dat import face_resnet_tensors, read_dlib_net
from lfw_cascade import score
from lfw_chip_eval import embed
from twinshot.evaluation.lfw import pair_arrays, read_lfw_pairs
from twinshot.faces.resnet import FaceResNet


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    """Max / mean abs difference and mean / min cosine between two ``(N, V, 128)`` sets."""
    a, b = a.reshape(-1, a.shape[-1]).astype(np.float64), b.reshape(-1, b.shape[-1]).astype(np.float64)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return {"max_abs": float(np.abs(a - b).max()), "mean_abs": float(np.abs(a - b).mean()),
            "cos_mean": float(cos.mean()), "cos_min": float(cos.min())}


def cached(file: Path, make) -> np.ndarray:
    if not file.is_file():
        np.save(file, make())
    return np.load(file)


def float_encoder(dat: Path) -> FaceResNet:
    """``face-resnet`` with dlib's float weights."""
    enc = FaceResNet(pretrained=False).eval()
    enc.load_tensors({k: torch.from_numpy(v) for k, v in face_resnet_tensors(read_dlib_net(dat)[1]).items()})
    return enc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=Path, required=True)
    ap.add_argument("--dat", type=Path, help="dlib_face_recognition_resnet_model_v1.dat (face_recognition_models 0.3.0)")
    ap.add_argument("--dlib", type=Path, help="(N, 2, 128) dlib-bin descriptors of each chip and its mirror")
    ap.add_argument("--pairs", default="../shared/datasets/lfw/pairs_dev.txt")
    ap.add_argument("--out", type=Path, default=Path("runs/lfw_dlib_float.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = np.load(args.chips)
    paths = data["paths"].tolist()
    stem = args.out.parent / args.chips.stem
    sets = {"port (face-api uint8)": cached(stem.with_name(stem.name + "_port.npy"), lambda: embed(FaceResNet().eval(), data["chips"], 0))}
    if args.dat:
        sets["port, dlib float weights"] = cached(stem.with_name(stem.name + "_port_float.npy"), lambda: embed(float_encoder(args.dat), data["chips"], 0))
    if args.dlib:
        sets["dlib-bin"] = np.load(args.dlib)
    i1, i2, same, fold_of = pair_arrays(read_lfw_pairs(args.pairs), {p: i for i, p in enumerate(paths)})
    first = next(iter(sets.values()))
    out = {"results": {name: score(v, i1, i2, same, fold_of) for name, v in sets.items()},
           "descriptors": {name: compare(first, v) for name, v in list(sets.items())[1:]}}
    if "dlib-bin" in sets and args.dat:
        out["descriptors"]["port, dlib float weights vs dlib-bin"] = compare(sets["port, dlib float weights"], sets["dlib-bin"])
    print(json.dumps(out, indent=1))
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
