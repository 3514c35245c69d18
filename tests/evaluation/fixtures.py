"""Builders of test inputs in the exact formats of the real files.

:func:`make_all_runs` writes an ``all_runs.zip`` (or folder) in the layout of Lake et al.'s
official one-shot runs: ``runNN/training/classMM.png``, ``runNN/test/itemKK.png`` and
``runNN/class_labels.txt`` with lines ``runNN/test/itemKK.png runNN/training/classMM.png``.
Images are 105x105 **1-bit** PNGs (PIL mode ``"1"``), ink black on white, like Lake's.

:func:`write_pairs` writes a labelled pairs CSV (``path1,path2,same``) over an image folder;
:func:`reference_scores` and :func:`sk_eer` are independent references for verification.
"""

from __future__ import annotations

import csv
import io
import itertools
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_curve

from tests.conftest import _glyph
from twinshot.data.images import load_image

N_RUNS = 20
WAYS = 20


def _png_1bit(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).convert("1").save(buf, format="PNG")
    return buf.getvalue()


@lru_cache(maxsize=4)
def _base_files(duplicate: bool, seed: int) -> tuple[tuple[tuple[str, bytes], ...], tuple[tuple[int, ...], ...]]:
    """Images and correct labels of every run (cached: drawing glyphs is the slow part)."""
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    answers = []
    for r in range(1, N_RUNS + 1):
        run = f"run{r:02d}"
        classes = [(r - 1) * WAYS + c for c in range(WAYS)]  # distinct synthetic characters
        training = [_glyph(rng, cls, 105) for cls in classes]
        for c, img in enumerate(training):
            files[f"{run}/training/class{c + 1:02d}.png"] = _png_1bit(img)
        truth = rng.permutation(WAYS).tolist()  # test item k shows training class truth[k]
        answers.append(tuple(truth))
        for k, c in enumerate(truth):
            img = training[c] if duplicate else _glyph(rng, classes[c], 105)
            files[f"{run}/test/item{k + 1:02d}.png"] = _png_1bit(img)
        files[f"{run}/class_labels.txt"] = _labels_text(run, truth)
    return tuple(files.items()), tuple(answers)


def _labels_text(run: str, listed: list[int]) -> bytes:
    lines = [f"{run}/test/item{k + 1:02d}.png {run}/training/class{c + 1:02d}.png" for k, c in enumerate(listed)]
    return ("\n".join(lines) + "\n").encode()


def all_runs_files(
    *,
    duplicate: bool = True,
    scrambled: dict[int, int] | None = None,
    seed: int = 0,
) -> tuple[dict[str, bytes], list[list[int]]]:
    """The files of an ``all_runs`` archive, keyed by their path relative to the runs' folder.

    Args:
        duplicate: test item images are byte-identical copies of their training image
            (a model that embeds faithfully then makes no error); otherwise another
            drawing (another jitter) of the same synthetic character.
        scrambled: ``{run number: k}``: in that run, the answers of the first ``k`` items
            are rotated among themselves in ``class_labels.txt`` (``k`` = 0 or >= 2; exactly
            ``k`` lines are then wrong for a model that gets every item right).
        seed: jitter of the glyphs and the permutation of the answers.

    Returns:
        ``(files, answers)``: the files, and for each run the true training class
        (0-based) of each test item.
    """
    items, truths = _base_files(duplicate, seed)
    files = dict(items)
    answers = [list(t) for t in truths]
    for r, n in (scrambled or {}).items():
        assert n != 1, "rotating one answer changes nothing; scramble 0 or >= 2 items"
        listed = list(answers[r - 1])
        listed[:n] = listed[1:n] + listed[:1]  # rotate: every one of the n lines is now wrong
        files[f"run{r:02d}/class_labels.txt"] = _labels_text(f"run{r:02d}", listed)
    return files, answers


def write_all_runs(
    target: Path,
    files: dict[str, bytes],
    *,
    top_folder: str | None = None,
    as_zip: bool = True,
) -> Path:
    """Write ``files`` as a zip (``target`` is the zip path) or a folder (``target`` is the folder),
    optionally under ``top_folder/``."""
    prefix = f"{top_folder}/" if top_folder else ""
    if as_zip:
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            folders = sorted({prefix + name.rsplit("/", 1)[0] + "/" for name in files})
            for folder in folders:  # like the official zip, list the directories too
                archive.writestr(folder, b"")
            for name, data in files.items():
                archive.writestr(prefix + name, data)
        return target
    for name, data in files.items():
        path = target / prefix / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return target


def make_all_runs(target: Path, *, top_folder: str | None = None, as_zip: bool = True, **kwargs) -> Path:
    """Build and write an ``all_runs`` archive; ``kwargs`` go to :func:`all_runs_files`."""
    files, _ = all_runs_files(**kwargs)
    return write_all_runs(target, files, top_folder=top_folder, as_zip=as_zip)


def write_pairs(folder: Path, csv_path: Path, *, n_same: int = 30, n_diff: int = 30, seed: int = 0) -> Path:
    """A pairs CSV over ``folder``'s images (relative paths), half same, half different."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[Path]] = {}
    for p in sorted(folder.rglob("*.png")):
        by_class.setdefault(str(p.parent), []).append(p)
    classes = sorted(by_class)
    rows = []
    same_pairs = [(a, b) for c in classes for a, b in itertools.combinations(by_class[c], 2)]
    for i in rng.choice(len(same_pairs), n_same, replace=False):
        rows.append((*same_pairs[i], "true"))
    for _ in range(n_diff):
        c1, c2 = rng.choice(len(classes), 2, replace=False)
        rows.append((rng.choice(by_class[classes[c1]]), rng.choice(by_class[classes[c2]]), "false"))
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path1", "path2", "same"])
        for a, b, s in rows:
            w.writerow([Path(a).relative_to(csv_path.parent).as_posix(), Path(b).relative_to(csv_path.parent).as_posix(), s])
    return csv_path


def reference_scores(model, pairs) -> np.ndarray:
    """Logits from the network's forward pass, one pair at a time."""
    pre = model.preprocessing
    out = []
    with torch.no_grad():
        for p in pairs:
            x1 = pre.to_float(load_image(p.path1, pre)[None])
            x2 = pre.to_float(load_image(p.path2, pre)[None])
            out.append(float(model(x1, x2)))
    return np.array(out)


def sk_eer(scores: np.ndarray, same: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(same, scores, drop_intermediate=False)
    diff = fpr - (1 - tpr)
    i = int(np.argmax(diff >= 0))
    t = 0.0 if diff[i] == diff[i - 1] else -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))
