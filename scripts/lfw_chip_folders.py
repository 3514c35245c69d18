"""Cache aligned LFW face chips once, as class folders for ``twinshot train`` (the
``faces-lfw`` and ``faces-lfw-scratch`` presets, ``data.aligned = true``).

Writes, under ``--out`` (default ``runs/lfw-chips``):

* ``train/<person>/<photo>.png``: the 150x150 chips of every person of the training folds
  (``--train-folds``, default 1-4 of ``pairs_dev.txt``) with at least ``--min-per-person``
  photos (2: a pair or a validation episode needs two), at most ``--max-per-person`` each,
  from all of the person's photos in the LFW folder (not only those in pairs);
* ``eval/<person>/<photo>.png`` and ``eval_pairs.csv`` (``path1,path2,same,fold``): the photos
  and pairs of the other folds (default 5-8), whose people are disjoint from ``train/``;
  score a trained model on them with ``scripts/lfw_eval_chips.py MODEL runs/lfw-chips/eval_pairs.csv``.

A chip is what the ``faces`` model's preprocessing makes (``twinshot.faces.align``: the tiny
face detector, face-api's 68 landmarks, dlib's 150x150 chip); a photo where no face is found
gets its centre 120x120 crop, as ``twinshot evaluate lfw`` does. ``--chips`` reuses chips of
``scripts/lfw_chip_eval.py`` (same code path) for the photos it holds.

    python scripts/lfw_chip_folders.py --train-folds 1-4 --eval-folds 5-8
"""

from __future__ import annotations

import argparse
import csv
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from twinshot.data.images import load_image
from twinshot.evaluation.lfw import read_lfw_pairs
from twinshot.faces.align import NoFaceError
from twinshot.models import load_model


def fold_range(text: str) -> list[int]:
    a, _, b = text.partition("-")
    return list(range(int(a) - 1, int(b or a)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default="../shared/datasets/lfw/pairs_dev.txt")
    ap.add_argument("--train-folds", default="1-4")
    ap.add_argument("--eval-folds", default="5-8")
    ap.add_argument("--min-per-person", type=int, default=2)
    ap.add_argument("--max-per-person", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("runs/lfw-chips"))
    ap.add_argument("--chips", type=Path, default=Path("runs/lfw_chips_mirror.npy"), help="chips cache of lfw_chip_eval.py (the shipped alignment)")
    ap.add_argument("--landmarks", type=Path, default=Path("runs/lfw_landmarks.npz"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    pre = load_model("faces").preprocessing
    fallback = replace(pre, align="", crop=0.48)
    cached: dict[str, np.ndarray] = {}
    if args.chips.is_file() and args.landmarks.is_file():
        chips = np.load(args.chips, mmap_mode="r")
        cached = {p: chips[i] for i, p in enumerate(np.load(args.landmarks)["paths"].tolist())}
    folds = read_lfw_pairs(args.pairs)
    images = Path(args.pairs).parent
    person = lambda p: os.path.basename(os.path.dirname(p))  # noqa: E731
    train_f, eval_f = fold_range(args.train_folds), fold_range(args.eval_folds)
    people = lambda fs: sorted({person(os.fspath(q)) for i in fs for p in folds[i] for q in (p.path1, p.path2)})  # noqa: E731
    train_people, eval_people = people(train_f), people(eval_f)
    if set(train_people) & set(eval_people):
        raise SystemExit("error: the train and eval folds share people")
    todo: list[tuple[str, Path]] = []
    for name in train_people:
        photos = sorted((images / name).glob("*.jpg"))
        if len(photos) < args.min_per_person:
            continue
        for f in photos[: args.max_per_person]:
            todo.append((os.fspath(f), args.out / "train" / name / (f.stem + ".png")))
    eval_rows = []
    for k, i in enumerate(eval_f):
        for p in folds[i]:
            row = []
            for q in (p.path1, p.path2):
                dst = args.out / "eval" / person(os.fspath(q)) / (Path(q).stem + ".png")
                todo.append((os.fspath(q), dst))
                row.append(os.fspath(dst.relative_to(args.out)))
            eval_rows.append(row + [int(p.same), k + 1])
    done = 0
    for src, dst in dict((d, (s, d)) for s, d in todo).values():
        if dst.is_file():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src in cached:
            chip = Image.fromarray(np.asarray(cached[src]))
        else:
            try:
                t = load_image(src, pre)
            except NoFaceError:
                t = load_image(src, fallback)
            chip = Image.fromarray(t[0].numpy())  # grey photos: the three channels are equal
        chip.save(dst)
        done += 1
        if done % 200 == 0:
            print(f"{done} chips", flush=True)
    with open(args.out / "eval_pairs.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path1", "path2", "same", "fold"])
        w.writerows(eval_rows)
    n_train = sum(1 for d in (args.out / "train").iterdir() if d.is_dir())
    print(f"train: {n_train} people; eval: {len(eval_people)} people, {len(eval_rows)} pairs; {done} chips written")


if __name__ == "__main__":
    main()
