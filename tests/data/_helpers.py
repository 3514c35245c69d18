"""Small synthetic datasets shared by the data tests."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import torch

from twinshot.data import LabelledImages, Preprocessing


def synthetic_dataset(
    counts: list[int] | None = None,
    groups: list[int] | None = None,
    size: int = 8,
) -> LabelledImages:
    """A LabelledImages whose class ``c`` has ``counts[c]`` images (default 6 classes x 5)
    in group ``groups[c]`` (default: classes split evenly over 2 groups); pixel (0, 0) of
    each image holds its index, to check which images end up where."""
    counts = counts if counts is not None else [5] * 6
    n_classes = len(counts)
    groups = groups if groups is not None else [c * 2 // n_classes for c in range(n_classes)]
    labels = torch.repeat_interleave(torch.arange(n_classes), torch.tensor(counts))
    n = len(labels)
    images = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n) % 256
    n_groups = max(groups) + 1
    return LabelledImages(
        images=images,
        labels=labels,
        class_names=[f"g{groups[c]}/c{c:02d}" for c in range(n_classes)],
        class_groups=torch.tensor(groups),
        group_names=[f"g{g}" for g in range(n_groups)],
        paths=[f"img{i}.png" for i in range(n)],
        preprocessing=Preprocessing(size=(size, size)),
    )


def zip_folder(folder: Path, zip_path: Path, top: str | None = None) -> Path:
    """Zip every file under ``folder`` (with directory entries, like the official zips),
    optionally under a single top folder ``top``."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        prefix = f"{top}/" if top else ""
        if top:
            zf.writestr(prefix, b"")
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            if path.is_dir():
                zf.writestr(f"{prefix}{rel}/", b"")
            else:
                zf.write(path, f"{prefix}{rel}")
    return zip_path


def png_bytes(array) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
