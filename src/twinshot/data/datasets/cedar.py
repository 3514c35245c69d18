"""CEDAR signatures (Kalera, Srihari & Xu 2004): file layout, verification pairs and the
relabelling that training uses.

Layout (``../shared/datasets/cedar``)::

    full_org/original_<writer>_<n>.png     genuine signatures (24 per writer)
    full_forg/forgeries_<writer>_<n>.png   skilled forgeries of that writer (24 per writer)

Writer-independent verification asks "is this questioned signature a genuine one of the
writer of this reference?" for writers the model never saw. :func:`cedar_pairs` builds,
for the given writers:

* **genuine** pairs: two genuine signatures of one writer (every unordered pair);
* **skilled** impostor pairs: a genuine signature of a writer vs a skilled forgery of that
  writer (every combination: the hard case);
* **random** impostor pairs: a genuine signature of a writer vs a genuine signature of
  another writer (seeded sample, as many per writer as genuine pairs: the easy case).

:func:`write_cedar_pairs` writes them as ``path1,path2,same,kind`` CSVs that
``twinshot evaluate verification`` and ``twinshot report`` read: one with the skilled
impostors, one with the random ones (each with all genuine pairs), and one with all.

:func:`relabel_cedar_writers` (``data.relabel = "cedar_writers"``) turns the two folder
classes into a class ``"<writer>"`` of genuine signatures and a class
``"<writer>/forged"`` of its skilled forgeries, both in group ``"<writer>"``; it runs
before the class-disjoint split, and the split is by group, so a writer's genuine
signatures and forgeries stay on one side. Samplers with ``negative_only`` set to
``"*/forged"`` use the forgeries only as negatives (never as anchors or positives).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from twinshot.data.dataset import LabelledImages
from twinshot.data.pairs import Pair, write_pairs_csv
from twinshot.errors import DataError

GENUINE_DIR = "full_org"
FORGED_DIR = "full_forg"
#: Suffix of the class of a writer's skilled forgeries after :func:`relabel_cedar_writers`.
FORGED_SUFFIX = "/forged"
#: The impostor kinds of :func:`cedar_pairs`.
IMPOSTOR_KINDS: tuple[str, ...] = ("skilled", "random")
_FILE = re.compile(r"^(original|forgeries)_(\d+)_(\d+)\.png$", re.IGNORECASE)


@dataclass(frozen=True)
class CedarImage:
    """One CEDAR image: its file, writer number, image number and whether it is genuine."""

    path: Path
    writer: int
    number: int
    genuine: bool


def parse_cedar_name(name: str) -> tuple[int, int, bool] | None:
    """``(writer, number, genuine)`` of a CEDAR file name (``original_3_7.png`` ->
    ``(3, 7, True)``), or None when the name is not CEDAR's."""
    m = _FILE.match(name.replace("\\", "/").rsplit("/", 1)[-1].rsplit(":", 1)[-1])
    if not m:
        return None
    return int(m.group(2)), int(m.group(3)), m.group(1).lower() == "original"


def parse_writers(spec: str | Iterable[int] | None) -> list[int] | None:
    """Writers from ``"36-45"``, ``"1,3,5-9"``, an iterable of ints, or None (all)."""
    if spec is None:
        return None
    if not isinstance(spec, str):
        return sorted({int(w) for w in spec})
    out: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise DataError(f"writers: {part!r} is not a number or a range like 36-45")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise DataError(f"writers: empty range {part!r}")
        out.update(range(lo, hi + 1))
    if not out:
        raise DataError("writers: no writer named")
    return sorted(out)


def cedar_images(root: str | os.PathLike, writers: Iterable[int] | str | None = None) -> list[CedarImage]:
    """The genuine and forged images of ``writers`` (all when None), ordered by writer,
    genuine first, then image number.

    Raises:
        DataError: when ``root`` is not a CEDAR folder or a named writer has no images.
    """
    root = Path(root)
    wanted = parse_writers(writers)
    images: list[CedarImage] = []
    for sub in (GENUINE_DIR, FORGED_DIR):
        folder = root / sub
        if not folder.is_dir():
            raise DataError(f"{root}: not a CEDAR folder (no {sub}/ inside)")
        for entry in folder.iterdir():
            parsed = parse_cedar_name(entry.name)
            if parsed is None:
                continue
            writer, number, genuine = parsed
            if wanted is None or writer in wanted:
                images.append(CedarImage(entry, writer, number, genuine))
    found = {im.writer for im in images}
    if wanted is not None:
        missing = [w for w in wanted if w not in found]
        if missing:
            raise DataError(f"{root}: no images of writer(s) {', '.join(map(str, missing))}")
    if not images:
        raise DataError(f"{root}: no CEDAR images (original_<writer>_<n>.png)")
    return sorted(images, key=lambda im: (im.writer, not im.genuine, im.number))


def cedar_pairs(
    root: str | os.PathLike,
    writers: Iterable[int] | str | None = None,
    *,
    random_per_writer: int | None = None,
    seed: int = 0,
) -> dict[str, list[Pair]]:
    """The writer-independent verification pairs of ``writers``.

    Args:
        root: the CEDAR folder.
        writers: e.g. ``"36-45"`` (validation writers); all when None.
        random_per_writer: random-impostor pairs per writer (default: as many as the
            writer's genuine pairs, 276 for 24 signatures).
        seed: seeds the random impostors.

    Returns:
        ``{"genuine": [...], "skilled": [...], "random": [...]}`` of :class:`Pair`.
    """
    images = cedar_images(root, writers)
    genuine_of: dict[int, list[CedarImage]] = {}
    forged_of: dict[int, list[CedarImage]] = {}
    for im in images:
        (genuine_of if im.genuine else forged_of).setdefault(im.writer, []).append(im)
    order = sorted(genuine_of)
    genuine: list[Pair] = []
    skilled: list[Pair] = []
    random: list[Pair] = []
    g = torch.Generator().manual_seed(int(seed))
    for w in order:
        refs = genuine_of[w]
        n_genuine = len(refs) * (len(refs) - 1) // 2
        genuine += [Pair(a.path, b.path, True) for i, a in enumerate(refs) for b in refs[i + 1 :]]
        skilled += [Pair(a.path, f.path, False) for a in refs for f in forged_of.get(w, [])]
        others = [im for o in order if o != w for im in genuine_of[o]]
        if not others:
            continue
        n = n_genuine if random_per_writer is None else int(random_per_writer)
        a_idx = torch.randint(len(refs), (n,), generator=g).tolist()
        b_idx = torch.randint(len(others), (n,), generator=g).tolist()
        random += [Pair(refs[a].path, others[b].path, False) for a, b in zip(a_idx, b_idx)]
    if not genuine:
        raise DataError(f"{root}: no writer has two genuine signatures")
    return {"genuine": genuine, "skilled": skilled, "random": random}


def write_cedar_pairs(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    writers: Iterable[int] | str | None = None,
    *,
    random_per_writer: int | None = None,
    seed: int = 0,
    relative: bool = True,
) -> dict[str, Path]:
    """Write ``skilled.csv`` (genuine + skilled impostors), ``random.csv`` (genuine + random
    impostors) and ``all.csv`` (all three) into ``out_dir``, with a ``kind`` column
    (``genuine``, ``skilled``, ``random``). Paths are relative to ``out_dir`` when
    ``relative``. Returns ``{"skilled": path, "random": path, "all": path}``."""
    pairs = cedar_pairs(root, writers, random_per_writer=random_per_writer, seed=seed)
    out_dir = Path(out_dir)
    rel = out_dir.resolve() if relative else None

    def write(name: str, kinds: Sequence[str]) -> Path:
        rows = [(p, k) for k in kinds for p in pairs[k]]
        if not any(k != "genuine" for _, k in rows):
            raise DataError(f"no {' or '.join(k for k in kinds if k != 'genuine')} impostor pairs for these writers")
        return write_pairs_csv(
            [p for p, _ in rows], out_dir / name, relative_to=rel, kinds=[k for _, k in rows]
        )

    return {
        "skilled": write("skilled.csv", ("genuine", "skilled")),
        "random": write("random.csv", ("genuine", "random")),
        "all": write("all.csv", ("genuine", "skilled", "random")),
    }


def cedar_pairs_summary(files: dict[str, Path]) -> dict[str, dict[str, int]]:
    """For each CSV written by :func:`write_cedar_pairs`, the number of pairs of each kind."""
    import csv

    out: dict[str, dict[str, int]] = {}
    for name, path in files.items():
        counts: dict[str, int] = {}
        with Path(path).open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                counts[row["kind"]] = counts.get(row["kind"], 0) + 1
        out[name] = counts
    return out


def relabel_cedar_writers(dataset: LabelledImages) -> LabelledImages:
    """CEDAR's two folder classes -> ``"<writer>"`` (genuine) and ``"<writer>/forged"``
    classes, both in group ``"<writer>"``, by file name.

    Returns:
        A new :class:`LabelledImages` sharing ``images`` with ``dataset``.
    """
    parsed = []
    for path in dataset.paths:
        p = parse_cedar_name(path)
        if p is None:
            raise DataError(f"{path}: not a CEDAR file name (original_<writer>_<n>.png or forgeries_<writer>_<n>.png)")
        parsed.append(p)
    writers = sorted({w for w, _, _ in parsed})
    group_of = {w: i for i, w in enumerate(writers)}
    class_names: list[str] = []
    class_group: list[int] = []
    for w in writers:
        class_names += [str(w), f"{w}{FORGED_SUFFIX}"]
        class_group += [group_of[w], group_of[w]]
    labels = [2 * group_of[w] + (0 if genuine else 1) for w, _, genuine in parsed]
    return LabelledImages(
        images=dataset.images,
        labels=torch.tensor(labels, dtype=torch.long),
        class_names=class_names,
        class_groups=torch.tensor(class_group, dtype=torch.long),
        group_names=[str(w) for w in writers],
        paths=list(dataset.paths),
        preprocessing=dataset.preprocessing,
    )


#: Runs on the whole dataset before the class-disjoint split (see training's prepare_data).
relabel_cedar_writers.before_split = True  # type: ignore[attr-defined]
