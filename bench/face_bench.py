"""Faces per second through the shipped ``faces`` model: detect + align + encode.

Each frame is a real LFW photo (250x250, grey copied to RGB) pasted off-centre into a
640x480 scene, as a door camera would see it. Three timings per frame, batch 1, on
``threads`` torch threads: detection + landmarks + alignment (the model's preprocessing),
encoding the chip (face-resnet, mirror-averaged as shipped), and the whole path. The CPU
seconds per face (all threads) and the load average are recorded too: on a shared machine
the wall-clock rate understates what idle cores give.

    python -m bench.face_bench --threads 2 --frames 40
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("TWINSHOT_DATASETS", ROOT.parent / "shared" / "datasets"))
GOAL_FACES_PER_S = 30.0


def scenes(n: int) -> list[Image.Image]:
    """``n`` 640x480 frames, each with one LFW photo at a different place."""
    lfw = DATASETS / "lfw"
    photos = sorted(lfw.glob("*/*_0001.jpg"))[: max(n, 1)]
    if not photos:
        raise FileNotFoundError(f"no LFW photos under {lfw}")
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        frame = Image.new("RGB", (640, 480), (int(rng.integers(40, 200)),) * 3)
        frame.paste(Image.open(photos[i % len(photos)]).convert("RGB"), (int(rng.integers(0, 390)), int(rng.integers(0, 230))))
        out.append(frame)
    return out


def face_throughput(frames: int = 40, threads: int = 2, repeats: int = 3) -> dict[str, Any]:
    """Median faces/s over ``repeats`` passes of ``frames`` frames (one warm-up pass first)."""
    import torch

    from twinshot.errors import DataError
    from twinshot.models import load_model
    from twinshot.preprocessing import decode_image_array

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = load_model("faces")
        prep = model.preprocessing
        imgs = scenes(frames)

        def align_all() -> list[np.ndarray]:
            chips = []
            for img in imgs:
                try:
                    chips.append(decode_image_array(img, prep))
                except DataError:
                    pass
            return chips

        def encode_all(chips: list[np.ndarray]) -> None:
            with torch.no_grad():
                for c in chips:
                    model.embed_images(torch.from_numpy(c)[None])

        chips = align_all()
        encode_all(chips[:2])
        t_align, t_encode, cpu = [], [], []
        for _ in range(repeats):
            c = time.process_time()
            t = time.perf_counter()
            chips = align_all()
            t_align.append(time.perf_counter() - t)
            t = time.perf_counter()
            encode_all(chips)
            t_encode.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        n = len(imgs)
        a, e = statistics.median(t_align), statistics.median(t_encode)
        total = n / (a + e)
        return {
            "frames": n, "faces_found": len(chips), "threads": threads, "repeats": repeats,
            "detect_align_per_s": n / a, "encode_per_s": len(chips) / e if chips else float("nan"),
            "faces_per_s": total, "cpu_s_per_face": statistics.median(cpu) / n,
            "load_average": os.getloadavg()[0], "goal": {"target": f">= {GOAL_FACES_PER_S:.0f} faces/s (detect + align + encode, {threads} threads)", "met": total >= GOAL_FACES_PER_S},
        }
    finally:
        torch.set_num_threads(before)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    print(json.dumps(face_throughput(a.frames, a.threads, a.repeats), indent=2))
