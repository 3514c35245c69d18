"""dlib's own descriptors of cached 150x150 chips and their mirrors: a reference, run with a
Python that has the ``dlib-bin`` wheel (dlib is never a twinshot dependency).

    python3 -m venv /tmp/dl && /tmp/dl/bin/pip install dlib-bin numpy
    OMP_NUM_THREADS=1 /tmp/dl/bin/python scripts/dlib_reference_embed.py CHIPS.npz MODEL.dat OUT.npy [--limit N]

``CHIPS.npz`` holds ``chips`` ``(N, 150, 150)`` uint8 grey (copied to R, G and B, as
twinshot does with a grey photo) or ``(N, 150, 150, 3)`` RGB; ``MODEL.dat`` is
``dlib_face_recognition_resnet_model_v1.dat``. Writes ``(N, 2, 128)`` float32: each chip's
``compute_face_descriptor`` and its left-right mirror's.
"""

import argparse
import time

import dlib
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("chips")
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--limit", type=int, default=0, help="only the first N chips")
    args = ap.parse_args()
    chips = np.load(args.chips)["chips"]
    if args.limit:
        chips = chips[: args.limit]
    net = dlib.face_recognition_model_v1(args.model)
    out = np.zeros((len(chips), 2, 128), np.float32)
    t0 = time.time()
    for i in range(0, len(chips), 32):
        batch = [np.ascontiguousarray(c if c.ndim == 3 else np.repeat(c[:, :, None], 3, 2)) for c in chips[i : i + 32]]
        views = batch + [np.ascontiguousarray(c[:, ::-1]) for c in batch]
        d = np.array([np.array(v) for v in net.compute_face_descriptor(views)], np.float32)
        out[i : i + len(batch), 0], out[i : i + len(batch), 1] = d[: len(batch)], d[len(batch) :]
        if i % 640 == 0:
            print(f"{i}/{len(chips)} {time.time() - t0:.0f}s", flush=True)
    np.save(args.out, out)
    print(f"done: {len(chips)} chips, dlib {dlib.__version__}, {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
