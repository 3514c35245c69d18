"""The JSON sidecar written beside every exported encoder (``<file>.json``).

It holds what a runtime without torch needs to use the file: the input and output
tensors, the preprocessing (so images are decoded as in training), the head with its
parameters (so pairs can be scored), the fingerprint of the source model, the SHA-256 of
the exported file, and the parity check's result. See ``docs/export.md`` for every field.
Imports the standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from twinshot.errors import DataError

#: The ``"format"`` value of a sidecar; the number changes when a field changes meaning.
SIDECAR_FORMAT = "twinshot-export/1"

#: Formats :func:`twinshot.export.export_model` writes.
EXPORT_FORMATS = ("onnx", "torchscript")


def sidecar_path(path: str | os.PathLike) -> Path:
    """The sidecar of an exported file: the same path with ``.json`` appended."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_sidecar(path: str | os.PathLike, *, model_format: str | None = None) -> dict[str, Any]:
    """Read and check the sidecar of the exported file ``path`` (or the sidecar itself).

    Raises:
        DataError: naming the file when the sidecar is missing, not JSON, of another
            format, or describes a ``model_format`` other than the one asked for.
    """
    p = Path(path)
    side = p if p.suffix == ".json" else sidecar_path(p)
    if not side.is_file():
        raise DataError(f"{side}: no such file; every exported model needs the JSON sidecar written beside it by `twinshot export`")
    try:
        meta = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{side}: not a readable JSON sidecar ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DataError(f"{side}: not a twinshot export sidecar (format {found!r}, expected {SIDECAR_FORMAT!r})")
    for key in ("model_format", "preprocessing", "head", "embedding_dim", "fingerprint", "sha256"):
        if key not in meta:
            raise DataError(f"{side}: the sidecar has no {key!r} field")
    if model_format is not None and meta["model_format"] != model_format:
        raise DataError(f"{side}: describes a {meta['model_format']} export, not {model_format}")
    return meta


def temp_path_beside(path: Path) -> Path:
    """A fresh, empty temporary file in ``path``'s folder (for writing, then ``os.replace``)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)

