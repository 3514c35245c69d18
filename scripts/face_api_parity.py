"""Parity of twinshot's face-api port with the original package, run in Node.js.

    cd /tmp/faceapi && npm pack @vladmandic/face-api@1.7.15 && tar xzf vladmandic-face-api-1.7.15.tgz
    mkdir -p node && cd node && npm init -y && npm install --ignore-scripts @tensorflow/tfjs@4.22.0
    python scripts/face_api_parity.py --package /tmp/faceapi/package --node-modules /tmp/faceapi/node/node_modules

The package's ``dist/face-api.node.js`` requires the native ``@tensorflow/tfjs-node``; a copy
patched to require the pure-JavaScript ``@tensorflow/tfjs`` (CPU backend) is written to a
temporary folder. Inputs are real LFW photos (greyscale, copied to three channels); the same
uint8 pixels go to both sides, so the difference measured is the nets' alone.
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

LFW = Path("../shared/datasets/lfw")
DEFAULT_IMAGES = [
    "Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Colin_Powell/Colin_Powell_0001.jpg",
    "Colin_Powell/Colin_Powell_0002.jpg", "Tony_Blair/Tony_Blair_0002.jpg", "Serena_Williams/Serena_Williams_0001.jpg",
    "Tony_Blair/Tony_Blair_0001.jpg",
]


def rgb(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8: a grey LFW photo copied to three channels."""
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)


def centre_chip(img: np.ndarray, crop: int = 120, size: int = 150) -> np.ndarray:
    h, w = img.shape[:2]
    t, l = (h - crop) // 2, (w - crop) // 2
    return np.asarray(Image.fromarray(img[t : t + crop, l : l + crop]).resize((size, size), Image.Resampling.BILINEAR))


def run_node(tasks: list[dict], package: Path, node_modules: Path, tmp: Path) -> list[dict]:
    src = (package / "dist" / "face-api.node.js").read_text()
    patched = src.replace('require("@tensorflow/tfjs-node")', 'require("@tensorflow/tfjs")')
    (tmp / "face-api.cjs").write_text(patched)
    job = {"faceapi": str(tmp / "face-api.cjs"), "models": str(package / "model"), "tasks": tasks}
    (tmp / "job.json").write_text(json.dumps(job))
    script = Path(__file__).with_name("face_api_parity.cjs")
    env = {**os.environ, "NODE_PATH": str(node_modules)}
    out = subprocess.run(["node", str(script), str(tmp / "job.json")], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path("/tmp/faceapi/package"))
    parser.add_argument("--node-modules", type=Path, default=Path("/tmp/faceapi/node/node_modules"))
    parser.add_argument("--lfw", type=Path, default=LFW)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from twinshot.faces.resnet import FaceResNet

    photos = [rgb(args.lfw / p) for p in DEFAULT_IMAGES]
    chips = np.stack([centre_chip(p) for p in photos])  # (N, 150, 150, 3)
    report: dict[str, object] = {"images": DEFAULT_IMAGES}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        chips.tofile(tmp / "chips.u8")
        photos_arr = np.stack(photos)  # (N, 250, 250, 3)
        photos_arr.tofile(tmp / "photos.u8")
        crops = np.stack([p[60:190, 65:185] for p in photos])  # (N, 130, 120, 3): not square
        crops.tofile(tmp / "crops.u8")
        scene = np.full((1, 360, 640, 3), 90, np.uint8)  # a wide scene, the face off-centre
        scene[0, 80:330, 360:610] = photos[1]
        scene.tofile(tmp / "scene.u8")
        tasks = [
            {"net": "detector", "raw": str(tmp / "scene.u8"), "shape": list(scene.shape), "inputSize": 416, "scoreThreshold": 0.5},
            {"net": "recognition", "raw": str(tmp / "chips.u8"), "shape": list(chips.shape)},
            {"net": "detector", "raw": str(tmp / "photos.u8"), "shape": list(photos_arr.shape), "inputSize": 416, "scoreThreshold": 0.5},
            {"net": "landmarks", "raw": str(tmp / "crops.u8"), "shape": list(crops.shape)},
        ]
        results = run_node(tasks, args.package, args.node_modules, tmp)
    scene_js = results.pop(0)["outputs"][0]
    js = np.array(results[0]["outputs"], dtype=np.float64)
    with torch.no_grad():
        x = torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255.0
        port = FaceResNet().eval()(x).double().numpy()
    report["recognition"] = {
        "tfjs": results[0]["tfjs"], "backend": results[0]["backend"], "descriptors": int(js.shape[0]),
        "max_abs_diff": float(np.abs(js - port).max()),
        "max_distance_diff": float(np.abs(
            np.linalg.norm(js[:, None] - js[None], axis=-1) - np.linalg.norm(port[:, None] - port[None], axis=-1)
        ).max()),
        "descriptor_max_abs": float(np.abs(js).max()),
    }
    from twinshot.faces.detector import TinyFaceDetector
    from twinshot.faces.landmarks import FaceLandmarkNet

    detector, marker = TinyFaceDetector(), FaceLandmarkNet()
    box_diff, n_boxes, same_count = 0.0, 0, True
    for photo, js_boxes in zip(photos + [scene[0]], results[1]["outputs"] + [scene_js]):
        ours = [[b.x, b.y, b.width, b.height, b.score] for b in detector.detect(photo)]
        same_count &= len(ours) == len(js_boxes)
        for a, b in zip(ours, js_boxes):
            box_diff = max(box_diff, float(np.abs(np.array(a) - np.array(b)).max()))
            n_boxes += 1
    report["detector"] = {"boxes": n_boxes, "same_number_of_boxes": bool(same_count), "max_abs_diff_px_or_score": box_diff}
    lm_js = np.array(results[2]["outputs"], dtype=np.float64)
    lm_ours = np.stack([marker.landmarks(c) for c in crops])
    report["landmarks"] = {"points": int(lm_js.shape[0] * 68), "max_abs_diff_px": float(np.abs(lm_js - lm_ours).max())}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
