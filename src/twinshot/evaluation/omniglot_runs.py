"""The 20 official 20-way one-shot classification runs of Lake, Salakhutdinov & Tenenbaum.

``all_runs.zip`` (or the folder it unpacks to) holds ``run01/`` .. ``run20/``, possibly
under one top folder. Each run has ``training/class01.png`` .. ``class20.png`` (one image
of each of 20 characters), ``test/item01.png`` .. ``item20.png`` (another drawing of each)
and ``class_labels.txt`` whose lines read ``runNN/test/itemKK.png runNN/training/classMM.png``
(the right answer for each test item; paths relative to the folder holding the runs).

Protocol, as in Lake's ``demo_classification.py``: each test image is compared with the 20
training images of its run and labelled with the most similar (highest head logit). Test
images are never compared with each other (no transductive tricks). A run's error is the
fraction of its test items labelled wrongly; the reported error rate is the mean over runs.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import torch

from twinshot.data.images import load_image
from twinshot.errors import DataError
from twinshot.evaluation.episodes import embed_dataset
from twinshot.models.siamese import SiameseNetwork

N_RUNS = 20
_LABELS = "class_labels.txt"
_LABELS_RE = re.compile(r"^(?P<prefix>(?:.+/)?)run(?P<run>\d{2})/class_labels\.txt$")
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".tif", ".tiff")


@dataclass(frozen=True)
class OmniglotRunsResult:
    """Outcome of the 20 official runs.

    Attributes:
        error_rate: mean over runs of the fraction of test items labelled wrongly (0..1;
            Lake et al. report it in percent).
        runs: the error rate of each run, ``run01`` first.
        accuracy: ``1 - error_rate``.
    """

    error_rate: float
    runs: tuple[float, ...]
    accuracy: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": "omniglot-runs",
            "error_rate": self.error_rate,
            "error_percent": 100.0 * self.error_rate,
            "accuracy": self.accuracy,
            "runs": list(self.runs),
        }


@dataclass(frozen=True)
class _Run:
    name: str  # "run01"
    training: list[str]  # archive names of the candidate images, sorted
    test: list[str]  # archive names of the test images, sorted
    answers: list[int]  # for each test image, its index in ``training``


def _open_source(path: Path) -> tuple[list[str], Callable[[str], bytes], Callable[[], None]]:
    """File names (POSIX, relative) in a zip or folder, a reader, and a closer."""
    if path.is_dir():
        names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        return names, lambda name: (path / name).read_bytes(), lambda: None
    if not path.is_file():
        raise DataError(f"{path}: no such file or folder (expected all_runs.zip or its unpacked folder)")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: not a readable zip file ({exc})") from None
    names = [
        n for n in archive.namelist()
        if not n.endswith("/") and not n.startswith("__MACOSX/") and "/._" not in f"/{n}"
    ]
    return names, archive.read, archive.close


def _parse_runs(path: Path, names: list[str], read: Callable[[str], bytes]) -> list[_Run]:
    present = set(names)
    found: dict[str, set[int]] = {}
    for name in names:
        m = _LABELS_RE.match(name)
        if m:
            found.setdefault(m["prefix"], set()).add(int(m["run"]))
    if not found:
        raise DataError(
            f"{path}: no runNN/{_LABELS} found; expected the layout of Lake's all_runs.zip "
            f"(run01/ .. run20/, each with training/, test/ and {_LABELS})"
        )
    if len(found) > 1:
        where = ", ".join(repr(p or "./") for p in sorted(found))
        raise DataError(f"{path}: runs found under several folders ({where}); keep one copy")
    prefix, numbers = next(iter(found.items()))
    missing = [f"{prefix}run{k:02d}/{_LABELS}" for k in range(1, N_RUNS + 1) if k not in numbers]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)}")

    runs = []
    for k in range(1, N_RUNS + 1):
        run = f"run{k:02d}"
        base = f"{prefix}{run}/"

        def images_in(sub: str) -> list[str]:
            folder = f"{base}{sub}/"
            return sorted(
                n for n in names
                if n.startswith(folder) and "/" not in n[len(folder):] and n.lower().endswith(_IMAGE_EXT)
            )

        training, test = images_in("training"), images_in("test")
        for sub, files in (("training", training), ("test", test)):
            if not files:
                raise DataError(f"{path}: {base}{sub}/ holds no images")
        labels_name = f"{base}{_LABELS}"
        try:
            text = read(labels_name).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise DataError(f"{path}: {labels_name} is not a text file") from None
        answer_of: dict[str, str] = {}
        for line_no, line in enumerate(text.splitlines(), start=1):
            fields = line.replace("\\", "/").split()
            if not fields:
                continue
            where = f"{path}: {labels_name}, line {line_no}"
            if len(fields) != 2:
                raise DataError(f"{where}: expected 'runNN/test/itemKK.png runNN/training/classMM.png', got {line.strip()!r}")
            # Official paths are relative to the folder holding the runs; accept paths
            # relative to the run folder too.
            item, answer = (
                f"{prefix}{p}" if f"{prefix}{p}" in present or f"{base}{p}" not in present else f"{base}{p}"
                for p in (str(PurePosixPath(f)) for f in fields)
            )
            for name in (item, answer):
                if name not in present:
                    raise DataError(f"{where}: {name} is not in the archive")
            if item not in test:
                raise DataError(f"{where}: {item} is not an image of {base}test/")
            if answer not in training:
                raise DataError(f"{where}: {answer} is not an image of {base}training/")
            if item in answer_of:
                raise DataError(f"{where}: {item} is labelled twice")
            answer_of[item] = answer
        unlabelled = [t for t in test if t not in answer_of]
        if unlabelled:
            raise DataError(f"{path}: {labels_name} has no line for {', '.join(unlabelled)}")
        position = {name: i for i, name in enumerate(training)}
        runs.append(_Run(run, training, test, [position[answer_of[t]] for t in test]))
    return runs


@torch.no_grad()
def evaluate_omniglot_runs(
    model: SiameseNetwork,
    all_runs_zip: str | os.PathLike,
    *,
    batch_size: int = 256,
) -> OmniglotRunsResult:
    """Error rate of ``model`` on the 20 official 20-way one-shot runs.

    Args:
        model: the Siamese network; images are decoded with ``model.preprocessing``
            (Lake's images are 105x105 1-bit PNGs, ink black: use ``invert=True``).
        all_runs_zip: ``all_runs.zip`` or the folder it unpacks to.
        batch_size: images per embedding batch.

    Raises:
        DataError: naming what is missing or malformed in the layout, or an unreadable image.
    """
    path = Path(all_runs_zip)
    names, read, close = _open_source(path)
    try:
        runs = _parse_runs(path, names, read)
        index: dict[str, int] = {}
        for run in runs:
            for name in (*run.training, *run.test):
                index.setdefault(name, len(index))
        images = []
        for name in index:
            try:
                images.append(load_image(read(name), model.preprocessing))
            except DataError as exc:
                raise DataError(f"{path}: {name}: {exc}") from None
    finally:
        close()
    embeddings = embed_dataset(model, torch.stack(images), batch_size=batch_size)
    device = embeddings.device
    errors = []
    for run in runs:
        train_idx = torch.tensor([index[n] for n in run.training], device=device)
        test_idx = torch.tensor([index[n] for n in run.test], device=device)
        logits = model.head.pairwise_logits(embeddings[test_idx], embeddings[train_idx])  # (n_test, n_train)
        predicted = logits.argmax(dim=1).cpu()
        wrong = (predicted != torch.tensor(run.answers)).sum().item()
        errors.append(wrong / len(run.test))
    error_rate = sum(errors) / len(errors)
    return OmniglotRunsResult(error_rate=error_rate, runs=tuple(errors), accuracy=1.0 - error_rate)
