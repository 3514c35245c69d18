"""Saving and loading models: a directory with ``model.safetensors`` and ``model.json``.

A model reference (the ``MODEL`` argument of the CLI) is one of:

* the name of a model shipped with the package (``twinshot.models.shipped_models()``);
* a checkpoint directory holding ``model.json`` and ``model.safetensors``;
* a training run directory (its ``best/`` checkpoint, else ``last/``);
* the path of a ``model.safetensors`` or ``model.json`` file inside a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from twinshot.errors import TwinshotError
from twinshot.models.siamese import ModelSpec, SiameseNetwork, build_model

WEIGHTS = "model.safetensors"
SPEC = "model.json"
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"


def shipped_models() -> list[str]:
    """Names of the models shipped inside the package."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / SPEC).is_file())


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a model is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(model: SiameseNetwork, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``directory`` atomically (each
    file is written to a temporary name and renamed). ``extra`` is stored in the JSON
    under ``"extra"`` (metrics, the training command...)."""
    if model.spec is None:
        raise TwinshotError("this model has no ModelSpec, so it cannot be saved and rebuilt")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".model.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, directory / WEIGHTS)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    meta = {"format": "twinshot-model/1", "spec": model.spec.to_dict(), "extra": extra or {}}
    _atomic_write_bytes(directory / SPEC, json.dumps(meta, indent=2).encode())
    return directory


_PASS = "pass a shipped model's name, a checkpoint or a training run directory"


def describe_model_file(path: Path) -> str:
    """What kind of file ``path`` is, when it was given where a model goes, and what to pass."""
    import zipfile

    if path.suffix == ".onnx":
        return f"an ONNX export: the gallery and `twinshot verify` take it; {_PASS} elsewhere"
    if path.suffix == ".safetensors":
        return f"bare weights; pass the directory that holds it with its {SPEC}"
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        names = []
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return (
            "a TorchScript export (an encoder only, without its head or preprocessing, for torch.jit.load); "
            f"{_PASS} (the model it was exported from), or an ONNX export (twinshot export MODEL --format onnx)"
        )
    return f"a file, not a model; {_PASS}, or an ONNX export (.onnx)"


def resolve_model_dir(ref: str | os.PathLike) -> Path:
    """Turn a model reference into the checkpoint directory that holds it."""
    text = str(ref)
    if text in shipped_models():
        return PRETRAINED_DIR / text
    path = Path(ref)
    if path.is_file() and path.name in (WEIGHTS, SPEC):
        path = path.parent
    if path.is_dir():
        if (path / SPEC).is_file():
            return path
        for sub in ("best", "last"):
            if (path / sub / SPEC).is_file():
                return path / sub
        raise TwinshotError(f"{path}: not a model checkpoint or run directory (no {SPEC} in it, best/ or last/)")
    if path.is_file():
        raise TwinshotError(f"{path}: {describe_model_file(path)}")
    names = ", ".join(shipped_models()) or "(none shipped)"
    raise TwinshotError(f"model {text!r} not found: not a path, nor a shipped model ({names})")


def load_weights_into(model: Any, path: Path, mismatch: str, error: type[TwinshotError] = TwinshotError) -> None:
    """Load the safetensors state at ``path`` into ``model`` (built from the same spec).

    Every key must match, except that an encoder which loaded weights shipped with the
    package (``packaged_weights``, face-resnet) may be saved without them: the file then
    holds only what differs (the head). Raises ``error`` naming the file, ``mismatch`` and
    the first missing and unexpected keys.
    """
    try:
        state = load_file(str(path))
    except (OSError, Exception) as exc:  # safetensors raises its own error types
        raise error(f"{path}: cannot read the weights ({exc})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if getattr(model.encoder, "packaged_weights", False):
        missing = [k for k in missing if not k.startswith("encoder.")]
    if missing or unexpected:
        raise error(f"{path}: {mismatch} (missing {missing[:3]}, unexpected {unexpected[:3]})")


def load_model(ref: str | os.PathLike) -> SiameseNetwork:
    """Load a model in eval mode from a reference (see the module docstring)."""
    directory = resolve_model_dir(ref)
    try:
        meta = json.loads((directory / SPEC).read_text())
        spec = ModelSpec.from_dict(meta["spec"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TwinshotError(f"{directory / SPEC}: not a valid model description ({exc})") from None
    model = build_model(spec)
    load_weights_into(model, directory / WEIGHTS, f"weights do not match {spec.encoder}/{spec.head}")
    model.eval()
    model.source = str(directory)  # type: ignore[attr-defined]
    return model


def model_metadata(ref: str | os.PathLike) -> dict[str, Any]:
    """The ``extra`` dictionary saved with a model (metrics, command, ...)."""
    return json.loads((resolve_model_dir(ref) / SPEC).read_text()).get("extra", {})


def fingerprint(model: SiameseNetwork) -> str:
    """SHA-256 of the weights plus the spec (encoder, head, preprocessing): two models
    with the same fingerprint embed every image identically."""
    h = hashlib.sha256()
    spec = model.spec.to_dict() if model.spec is not None else {"preprocessing": model.preprocessing.to_dict()}
    h.update(json.dumps(spec, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
