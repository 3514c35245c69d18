"""Labelled pairs files: a CSV with columns ``path1,path2,same``.

``same`` is ``true``/``false`` (also accepted: ``1``/``0``, ``yes``/``no``, any case).
Relative paths resolve against the CSV's folder. Used by ``evaluate verification``,
``gallery calibrate`` and ``report``; written by the dataset pair builders of
:mod:`twinshot.data.datasets` through :func:`write_pairs_csv`. Extra columns (such as the
``kind`` of an impostor pair) are allowed and ignored by :func:`read_pairs_csv`.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from twinshot.errors import DataError

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


@dataclass(frozen=True)
class Pair:
    """One labelled pair: two image paths and whether they show the same class."""

    path1: Path
    path2: Path
    same: bool


def read_pairs_csv(path: str | os.PathLike) -> list[Pair]:
    """Read a pairs CSV. Errors name the file, the line and the field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such pairs file")
    try:
        pairs = _read_pairs(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text CSV file (byte {exc.start} is not UTF-8)") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if not pairs:
        raise DataError(f"{path}: no pairs in the file")
    return pairs


def _read_pairs(path: Path) -> list[Pair]:
    base = path.parent
    pairs: list[Pair] = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        missing = {"path1", "path2", "same"} - set(fields)
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}; expected path1,path2,same")
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            flag = row["same"].lower()
            if flag in _TRUE:
                same = True
            elif flag in _FALSE:
                same = False
            else:
                raise DataError(f"{path}, line {line}: field 'same' is {row['same']!r}; expected true or false")
            if not row["path1"] or not row["path2"]:
                raise DataError(f"{path}, line {line}: empty path1 or path2")
            p1, p2 = Path(row["path1"]), Path(row["path2"])
            pairs.append(Pair(p1 if p1.is_absolute() else base / p1, p2 if p2.is_absolute() else base / p2, same))
    return pairs


def write_pairs_csv(
    pairs: Sequence[Pair],
    path: str | os.PathLike,
    *,
    relative_to: str | os.PathLike | None = None,
    kinds: Sequence[str] | None = None,
) -> Path:
    """Write ``path1,path2,same`` rows (plus a ``kind`` column when ``kinds`` is given, one
    per pair) atomically (temporary file + rename).

    Paths are written relative to ``relative_to`` when given (``read_pairs_csv`` resolves
    relative paths against the CSV's folder), else as they are.
    """
    path = Path(path)
    if kinds is not None and len(kinds) != len(pairs):
        raise DataError(f"{len(kinds)} kinds for {len(pairs)} pairs")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path1", "path2", "same"] + (["kind"] if kinds is not None else []))
    for i, p in enumerate(pairs):
        a, b = Path(p.path1), Path(p.path2)
        if relative_to is not None:
            a, b = Path(os.path.relpath(a, relative_to)), Path(os.path.relpath(b, relative_to))
        row = [a.as_posix(), b.as_posix(), "true" if p.same else "false"]
        writer.writerow(row + ([kinds[i]] if kinds is not None else []))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(buf.getvalue())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
