"""The cross-media signatures dataset: its file layout, writer-verification pairs and the
``writer/name`` relabelling.

The dataset is a folder of writers, ``<writer>/<n>.png`` with ``n`` in ``1..40``: every
writer wrote the same 10 names once on each of four media. Image ``n`` shows name
``((n - 1) mod 10) + 1`` on medium :func:`signature_medium` (1-10 paper, 11-20 tablet,
21-30 phone, first setting, 31-40 phone, second setting).

Writer verification asks "did this writer write this signature?":

* a **genuine** pair is the same writer writing the same name on two different media;
* an **impostor** pair is two different writers writing the same name (there are no
  skilled forgeries in this data, so the same name by someone else is the hard case).

:func:`writer_verification_pairs` builds those pairs (as :class:`Pair`, the format of
``read_pairs_csv``), :func:`twinshot.data.pairs.write_pairs_csv` writes them for
``twinshot report --pairs`` / ``twinshot evaluate verification``, and :func:`relabel_writer_name` turns the writer
classes of a loaded :class:`LabelledImages` into ``writer/name`` classes grouped by name,
so that within-group episodes contrast different writers writing the same name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from twinshot.data.dataset import LabelledImages
from twinshot.errors import DataError

__all__ = [
    "MEDIA", "SignatureImage", "relabel_writer_name", "signature_images", "signature_medium",
    "signature_name", "write_pairs_csv", "writer_verification_pairs",
]
from twinshot.data.pairs import Pair, write_pairs_csv

#: Media of the images, in file-number order (10 images each).
MEDIA: tuple[str, ...] = ("paper", "tablet", "phone1", "phone2")
NAMES_PER_WRITER = 10
IMAGES_PER_WRITER = NAMES_PER_WRITER * len(MEDIA)
_FILE = re.compile(r"^(\d+)\.png$", re.IGNORECASE)


def _check_number(number: int) -> None:
    if not 1 <= number <= IMAGES_PER_WRITER:
        raise DataError(f"signature image number must be in 1..{IMAGES_PER_WRITER}, got {number}")


def signature_name(number: int) -> int:
    """The name (``1..10``) that image ``number.png`` shows: ``((number - 1) mod 10) + 1``."""
    _check_number(number)
    return (number - 1) % NAMES_PER_WRITER + 1


def signature_medium(number: int) -> str:
    """The medium of image ``number.png``: ``paper``, ``tablet``, ``phone1`` or ``phone2``."""
    _check_number(number)
    return MEDIA[(number - 1) // NAMES_PER_WRITER]


@dataclass(frozen=True)
class SignatureImage:
    """One image of the dataset: its file, writer, file number, name (1..10) and medium."""

    path: Path
    writer: str
    number: int
    name: int
    medium: str


def _writer_key(writer: str) -> tuple[int, str]:
    return (int(writer), writer) if writer.isdigit() else (1 << 30, writer)


def signature_images(root: str | os.PathLike, writers: Iterable[str] | None = None) -> list[SignatureImage]:
    """The images of ``writers`` (folder names; all writers when None), ordered by writer
    (numerically) then file number.

    Raises:
        DataError: when ``root`` or a named writer is missing, or a writer has no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such signatures folder")
    if writers is None:
        names = sorted((p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_writer_key)
    else:
        names = sorted({str(w) for w in writers}, key=_writer_key)
    images: list[SignatureImage] = []
    for writer in names:
        folder = root / writer
        if not folder.is_dir():
            raise DataError(f"{folder}: no such writer folder")
        found = []
        for entry in folder.iterdir():
            m = _FILE.match(entry.name)
            if m and 1 <= int(m.group(1)) <= IMAGES_PER_WRITER:
                n = int(m.group(1))
                found.append(SignatureImage(entry, writer, n, signature_name(n), signature_medium(n)))
        if not found:
            raise DataError(f"{folder}: no signature images named 1.png..{IMAGES_PER_WRITER}.png")
        images.extend(sorted(found, key=lambda s: s.number))
    if not images:
        raise DataError(f"{root}: no writer folders")
    return images


def writer_verification_pairs(
    root: str | os.PathLike,
    writers: Iterable[str] | None = None,
    *,
    max_impostors: int | None = None,
    seed: int = 0,
) -> list[Pair]:
    """Genuine and impostor pairs of the writer-verification protocol.

    Genuine: every pair of images of one writer showing one name on different media
    (6 per writer and name when all four media are there). Impostor: every pair of images
    of the same name by two different writers (any media), or a seeded random subset of
    ``max_impostors`` of them.

    Args:
        root: the dataset folder (``<writer>/<n>.png``).
        writers: the writers to use (e.g. the held-out ones); all when None.
        max_impostors: keep at most this many impostor pairs (uniformly, seeded).
        seed: seeds the impostor subset.

    Returns:
        Genuine pairs first, then impostors; each ``Pair(path1, path2, same)``.
    """
    images = signature_images(root, writers)
    by_name: dict[int, list[SignatureImage]] = {}
    for im in images:
        by_name.setdefault(im.name, []).append(im)
    genuine: list[Pair] = []
    impostor: list[Pair] = []
    for name in sorted(by_name):
        group = by_name[name]
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if a.writer == b.writer:
                    if a.medium != b.medium:
                        genuine.append(Pair(a.path, b.path, True))
                else:
                    impostor.append(Pair(a.path, b.path, False))
    if not genuine or not impostor:
        raise DataError(f"{root}: need at least two writers with the same name on two media to build pairs")
    if max_impostors is not None and max_impostors < len(impostor):
        if max_impostors < 1:
            raise DataError(f"max_impostors must be >= 1, got {max_impostors}")
        g = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(impostor), generator=g)[:max_impostors].sort().values.tolist()
        impostor = [impostor[k] for k in keep]
    return genuine + impostor


def relabel_writer_name(dataset: LabelledImages) -> LabelledImages:
    """Turn writer classes into ``writer/name`` classes, grouped by name.

    Each image's file number (from ``dataset.paths``) gives its name; the new class is
    ``"<writer>/name<NN>"`` and its group is ``"name<NN>"``, so a within-group episode
    holds one name written by several writers (the impostor case of the protocol).

    Returns:
        A new :class:`LabelledImages` sharing ``images`` with ``dataset``.
    """
    labels: list[int] = []
    class_ids: dict[str, int] = {}
    class_group: list[int] = []
    group_names = [f"name{n:02d}" for n in range(1, NAMES_PER_WRITER + 1)]
    for label, path in zip(dataset.labels.tolist(), dataset.paths):
        m = _FILE.match(path.replace("\\", "/").rsplit("/", 1)[-1].rsplit(":", 1)[-1])
        if not m:
            raise DataError(f"{path}: not a signatures file name (<n>.png)")
        name = signature_name(int(m.group(1)))
        key = f"{dataset.class_names[label]}/name{name:02d}"
        if key not in class_ids:
            class_ids[key] = len(class_ids)
            class_group.append(name - 1)
        labels.append(class_ids[key])
    return LabelledImages(
        images=dataset.images,
        labels=torch.tensor(labels, dtype=torch.long),
        class_names=list(class_ids),
        class_groups=torch.tensor(class_group, dtype=torch.long),
        group_names=group_names,
        paths=list(dataset.paths),
        preprocessing=dataset.preprocessing,
    )
