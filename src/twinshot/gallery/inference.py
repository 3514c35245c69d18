"""Which runtime embeds images for the gallery and ``twinshot verify``: torch eager or ONNX
Runtime.

``inference`` is one of :data:`INFERENCE`:

* ``"auto"`` (default): a model given by reference (a shipped name, a checkpoint or a run
  directory) runs on **ONNX Runtime** when ``onnxruntime`` is installed: its encoder is
  exported once to ``<cache_dir>/<fingerprint>.onnx`` (with the export's parity check,
  written atomically) and reused by every later call. Measured on the compact encoder,
  ONNX Runtime embeds 3-4x faster than torch eager at batch 1 and 256 (``docs/benchmarks.md``).
  Anything that goes wrong (onnxruntime or the exporter missing, an export or parity
  failure, an unwritable cache, a head that has no numpy form) falls back silently to
  torch. A :class:`SiameseNetwork` object passed in memory runs on torch (it may be
  training); a ``.onnx`` file runs on ONNX Runtime.
* ``"torch"``: torch eager, always (a ``.onnx`` file is refused).
* ``"onnx"``: ONNX Runtime, always; a failed export is an error.

A ``.onnx`` file (written by ``twinshot export``, with its sidecar) is opened without
importing torch. Once a model reference has been exported, later ``"auto"`` calls find the
cached file from the checkpoint's bytes alone (``<cache_dir>/refs/``), so they do not
import torch either.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from twinshot.errors import ConfigError, TwinshotError
from twinshot.gallery.embedding import Embedder, TorchEmbedder, as_embedder

#: Inference choices.
INFERENCE = ("auto", "torch", "onnx")
#: Where exported encoders are cached (one ``<fingerprint>.onnx`` + sidecar per model).
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "twinshot" / "onnx"
#: Checkpoint files whose bytes identify a model directory without loading it.
_CHECKPOINT_FILES = ("model.json", "model.safetensors")
#: The shipped models (as :data:`twinshot.models.io.PRETRAINED_DIR`, without importing torch).
_PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"


def _check(inference: str) -> None:
    if inference not in INFERENCE:
        raise ConfigError(f"unknown inference {inference!r}; valid: {', '.join(INFERENCE)}")


def onnx_available() -> bool:
    """Whether onnxruntime can be imported (without importing it twice)."""
    if "onnxruntime" in sys.modules:
        return True
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def is_onnx_path(model: Any) -> bool:
    return isinstance(model, (str, os.PathLike)) and os.fspath(model).endswith(".onnx")


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR


def _ref_key(directory: Path) -> str | None:
    """A key for a checkpoint directory from its files' paths, sizes and modification
    times (``None`` if it is not a checkpoint directory)."""
    h = hashlib.sha256(str(directory.resolve()).encode())
    for name in _CHECKPOINT_FILES:
        f = directory / name
        try:
            st = f.stat()
        except OSError:
            return None
        h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ref.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _open_cached(path: Path, fingerprint: str | None = None) -> Embedder | None:
    """The cached export at ``path``, or ``None`` if absent, broken or of another model."""
    if not path.is_file():
        return None
    try:
        from twinshot.export.onnx_runtime import OnnxEmbedder

        embedder = OnnxEmbedder(path)
    except TwinshotError:
        return None
    if fingerprint is not None and embedder.fingerprint != fingerprint:
        return None
    if embedder.head is None:
        return None
    return embedder


def cached_onnx(model: Any, cache_dir: str | os.PathLike | None = None) -> Embedder:
    """The ONNX Runtime embedder of a torch ``model``'s encoder, exported to (or found in)
    ``cache_dir`` as ``<fingerprint>.onnx``, keyed by the model's fingerprint.

    Raises:
        TwinshotError: the export (or its parity check) failed, onnxruntime is missing, or
            the head has no numpy form.
    """
    from twinshot.models.io import fingerprint

    fp = fingerprint(model)
    directory = _cache_dir(cache_dir)
    path = directory / f"{fp[:40]}.onnx"
    found = _open_cached(path, fp)
    if found is not None:
        return found
    if not onnx_available():
        raise TwinshotError("ONNX inference needs onnxruntime: pip install 'twinshot[export]'")
    from twinshot.export.exporter import export_model, head_name
    from twinshot.export.numpy_heads import NUMPY_HEADS

    if head_name(model) not in NUMPY_HEADS:
        raise TwinshotError(f"head {head_name(model)!r} cannot be scored without torch; use inference='torch'")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TwinshotError(f"{directory}: cannot create the ONNX cache ({exc.__class__.__name__})") from None
    # parity-checked, written atomically. The TorchScript-based exporter takes ~0.5 s, the
    # dynamo one ~5 s (measured, compact encoder); both give the same file up to 1e-7.
    try:
        export_model(model, "onnx", path, exporter="legacy")
    except Exception:  # the legacy exporter is deprecated: any failure, try the dynamo one
        try:
            export_model(model, "onnx", path, exporter="dynamo")
        except TwinshotError:
            raise
        except Exception as exc:  # the exporters raise many types; the caller gets one
            raise TwinshotError(f"the ONNX export of the model failed ({exc.__class__.__name__}: {exc})") from None
    found = _open_cached(path, fp)
    if found is None:
        raise TwinshotError(f"{path}: the cached ONNX export cannot be opened")
    return found


def load_embedder(
    model: Any,
    *,
    inference: str = "auto",
    cache_dir: str | os.PathLike | None = None,
) -> tuple[Embedder, str]:
    """Resolve a model into the :class:`Embedder` that runs it and the reference a gallery
    stores for it (see the module docstring for ``inference``).

    Args:
        model: a :class:`twinshot.models.SiameseNetwork`, an :class:`Embedder`, a ``.onnx``
            file exported by ``twinshot export``, a shipped model's name, a checkpoint or a
            training run directory.
        inference: ``"auto"``, ``"torch"`` or ``"onnx"``.
        cache_dir: where exported encoders are cached (default :data:`DEFAULT_CACHE_DIR`).

    Returns:
        ``(embedder, ref)``: ``ref`` is a shipped name, an absolute checkpoint directory or
        ``.onnx`` path, or ``""`` for a model that only lives in memory.

    Raises:
        TwinshotError: the model cannot be found or loaded; with ``inference="onnx"``, the
            export failed; a ``.onnx`` file with ``inference="torch"``.
    """
    _check(inference)
    if is_onnx_path(model):
        if inference == "torch":
            raise ConfigError(f"{model}: an ONNX file runs on ONNX Runtime; use inference 'auto' or 'onnx'")
        from twinshot.export.onnx_runtime import OnnxEmbedder

        return OnnxEmbedder(model), str(Path(model).resolve())
    if not isinstance(model, (str, os.PathLike)):
        embedder = as_embedder(model)
        ref = _memory_ref(embedder)
        if inference == "onnx" and isinstance(embedder, TorchEmbedder):
            return cached_onnx(embedder.model, cache_dir), ref
        if inference == "torch" and not isinstance(embedder, TorchEmbedder):
            raise ConfigError(f"{embedder!r} is not a torch model; use inference 'auto' or 'onnx'")
        return embedder, ref

    text = os.fspath(model)
    if inference == "auto" and onnx_available():
        fast = _cached_by_ref(text, cache_dir)
        if fast is not None:
            return fast
    from twinshot.models.io import load_model, resolve_model_dir, shipped_models

    loaded = load_model(text)
    ref = text if text in shipped_models() else str(resolve_model_dir(text).resolve())
    if inference == "torch":
        return TorchEmbedder(loaded), ref
    if inference == "onnx":
        embedder = cached_onnx(loaded, cache_dir)
    else:
        try:
            embedder = cached_onnx(loaded, cache_dir) if onnx_available() else TorchEmbedder(loaded)
        except Exception:  # any export problem: torch eager, no error
            return TorchEmbedder(loaded), ref
    _remember_ref(text, ref, embedder, cache_dir)
    return embedder, ref


def _memory_ref(embedder: Any) -> str:
    if isinstance(embedder, TorchEmbedder):
        source = getattr(embedder.model, "source", "")
        return str(Path(source).resolve()) if source and Path(source).exists() else str(source or "")
    path = getattr(embedder, "path", None)
    return str(Path(path).resolve()) if path is not None else ""


def _checkpoint_dir(text: str) -> Path | None:
    """The checkpoint directory ``text`` names, found without torch: a shipped model's
    name (looked up first, as :func:`twinshot.models.load_model` does) or a checkpoint or
    run directory; ``None`` if unsure (then ``load_model`` decides)."""
    p = Path(text)
    candidates = [p, p / "best", p / "last"]
    if text and "/" not in text and "\\" not in text and text not in (".", ".."):
        candidates.insert(0, _PRETRAINED_DIR / text)
    for candidate in candidates:
        if all((candidate / f).is_file() for f in _CHECKPOINT_FILES):
            return candidate
    return None


def _cached_by_ref(text: str, cache_dir: str | os.PathLike | None) -> tuple[Embedder, str] | None:
    """A previous export of the checkpoint ``text`` names, found from its files alone."""
    directory = _checkpoint_dir(text)
    if directory is None:
        return None
    key = _ref_key(directory)
    if key is None:
        return None
    try:
        entry = json.loads((_cache_dir(cache_dir) / "refs" / f"{key}.json").read_text())
        embedder = _open_cached(_cache_dir(cache_dir) / entry["onnx"], entry["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (embedder, str(entry["ref"])) if embedder is not None else None


def _remember_ref(text: str, ref: str, embedder: Any, cache_dir: str | os.PathLike | None) -> None:
    """Record which cached export a checkpoint directory maps to (best effort)."""
    path = getattr(embedder, "path", None)
    directory = _checkpoint_dir(text)
    if path is None or directory is None:
        return
    key = _ref_key(directory)
    if key is None:
        return
    try:
        _write_json(
            _cache_dir(cache_dir) / "refs" / f"{key}.json",
            {"ref": ref, "onnx": Path(path).name, "fingerprint": embedder.fingerprint, "checkpoint": str(directory.resolve())},
        )
    except OSError:
        pass


__all__ = ["DEFAULT_CACHE_DIR", "INFERENCE", "cached_onnx", "load_embedder", "onnx_available"]
