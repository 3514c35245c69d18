"""Exporting a model's encoder to ONNX or TorchScript, with a parity check.

:func:`export_model` writes the encoder of a :class:`~twinshot.models.SiameseNetwork`
(input float32 ``(B, C, H, W)``, already preprocessed; output float32 ``(B, D)``) and a
JSON sidecar ``<out>.json`` (see :mod:`twinshot.export.sidecar`). Before anything is
written it runs the exported file on sample inputs (batch 1 and a larger batch) and
compares the embeddings with the torch model's; a maximum absolute difference above
``tolerance`` (1e-4) fails the export and leaves no file behind.

Exporters (checked on torch 2.13, CPU):

* ONNX: ``torch.onnx.export(..., dynamo=True)``, the ``torch.export``-based exporter
  (torch's default since 2.9; it needs the ``onnx`` and ``onnxscript`` packages). If it
  fails, ``exporter="auto"`` falls back to the legacy TorchScript-based exporter
  (``dynamo=False``, deprecated in torch but still working), and records which one ran.
  The parity check runs the file in ONNX Runtime.
* TorchScript: ``torch.jit.trace`` (``torch.jit.script`` cannot compile the encoders'
  annotations). ``torch.jit`` is deprecated in torch 2.13 but still supported; the traced
  graph of every registered encoder takes any batch size.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import logging
import math
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, Union

import numpy as np
import torch

from twinshot.errors import ConfigError, TwinshotError
from twinshot.export.numpy_heads import NUMPY_HEADS
from twinshot.export.sidecar import (
    EXPORT_FORMATS,
    SIDECAR_FORMAT,
    file_sha256,
    sidecar_path,
    temp_path_beside,
)
from twinshot.models.heads import HEADS, Head
from twinshot.models.siamese import SiameseNetwork

ModelRef = Union[SiameseNetwork, str, os.PathLike]

#: Largest accepted max |difference| of embeddings between the export and the torch model.
DEFAULT_TOLERANCE = 1e-4
#: Default ONNX opset (supported by ONNX Runtime >= 1.14).
DEFAULT_OPSET = 18
#: Lowest ONNX opset accepted (older ones lack operators every encoder uses).
MIN_OPSET = 9
#: ONNX exporters: ``"auto"`` tries ``"dynamo"`` then ``"legacy"``.
ONNX_EXPORTERS = ("auto", "dynamo", "legacy")
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"


class ParityError(TwinshotError):
    """The exported file's embeddings differ from the torch model's by more than the tolerance."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote and how well the export matches the model.

    Attributes:
        path: the exported file.
        sidecar: its JSON sidecar (``<path>.json``).
        format: ``"onnx"`` or ``"torchscript"``.
        exporter: the exporter that produced the file, e.g. ``"torch.onnx.export(dynamo=True)"``.
        opset: the ONNX opset (``None`` for TorchScript).
        max_abs_diff: the largest absolute difference of any embedding value, all batches.
        tolerance: the largest difference accepted.
        parity: ``{batch size: max abs difference}`` for each sample batch.
        fingerprint: the source model's fingerprint (:func:`twinshot.models.fingerprint`).
        source: the model reference (shipped name or checkpoint directory; ``""`` if in memory).
        input_shape: ``(C, H, W)`` of the encoder's input.
        embedding_dim: D.
        dynamic_batch: whether the file takes any batch size.
        bytes: the file's size.
        seconds: wall time of the export and the check.
    """

    path: Path
    sidecar: Path
    format: str
    exporter: str
    opset: int | None
    max_abs_diff: float
    tolerance: float
    parity: dict[int, float]
    fingerprint: str
    source: str
    input_shape: tuple[int, int, int]
    embedding_dim: int
    dynamic_batch: bool
    bytes: int
    seconds: float = field(default=0.0, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sidecar": str(self.sidecar),
            "format": self.format,
            "exporter": self.exporter,
            "opset": self.opset,
            "max_abs_diff": self.max_abs_diff,
            "tolerance": self.tolerance,
            "parity": {str(k): v for k, v in self.parity.items()},
            "fingerprint": self.fingerprint,
            "source": self.source,
            "input_shape": list(self.input_shape),
            "embedding_dim": self.embedding_dim,
            "dynamic_batch": self.dynamic_batch,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
        }


# -- the model -----------------------------------------------------------------------------


def resolve(model: ModelRef) -> tuple[SiameseNetwork, str]:
    """A loaded model and its reference (shipped name, absolute checkpoint directory, or
    ``""`` for a model that only lives in memory)."""
    from twinshot.models.io import load_model, resolve_model_dir, shipped_models

    if isinstance(model, SiameseNetwork):
        source = str(getattr(model, "source", "") or "")
        return model, str(Path(source).resolve()) if source and Path(source).exists() else source
    if not isinstance(model, (str, os.PathLike)):
        raise ConfigError(f"model must be a SiameseNetwork, a checkpoint path or a shipped name, got {type(model).__name__}")
    text = os.fspath(model)
    loaded = load_model(text)
    return loaded, text if text in shipped_models() else str(resolve_model_dir(text).resolve())


def head_name(model: SiameseNetwork) -> str:
    """The registered name of the model's head."""
    if model.spec is not None:
        return model.spec.head
    for name in HEADS.names():
        if type(model.head) is HEADS.get(name):
            return name
    return type(model.head).__name__


def head_to_dict(head: Head, name: str) -> dict[str, Any]:
    """The head and its parameters as JSON: ``{"name", "scale", "bias"}``, plus ``"alpha"``
    (D floats) and ``"beta"`` for Koch's ``weighted_l1``; ``"numpy"`` tells whether
    :class:`twinshot.export.numpy_heads.NumpyHead` can score it."""
    d: dict[str, Any] = {
        "name": name,
        "scale": float(head.scale.detach()),
        "bias": float(head.bias.detach()),
        "numpy": name in NUMPY_HEADS,
    }
    if name == "weighted_l1":
        d["alpha"] = [float(v) for v in head.alpha.detach().cpu().float().numpy()]  # type: ignore[union-attr]
        d["beta"] = float(head.beta.detach())  # type: ignore[union-attr]
    return d


def sample_inputs(model: SiameseNetwork, batch_size: int, seed: int = 0) -> torch.Tensor:
    """Random uint8 images, preprocessed like real ones: float32 ``(batch_size, C, H, W)``."""
    p = model.preprocessing
    g = torch.Generator().manual_seed(seed + batch_size)
    images = torch.randint(0, 256, (batch_size, p.channels, *p.size), generator=g, dtype=torch.uint8)
    return p.to_float(images)


# -- exporters -----------------------------------------------------------------------------


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' deprecation warnings and progress logs."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_onnx(encoder: torch.nn.Module, example: torch.Tensor, tmp: Path, *, opset: int, dynamic_batch: bool, exporter: str) -> str:
    """Write ``encoder`` to ``tmp`` as ONNX; returns the exporter used."""
    errors: list[str] = []
    tries = ["dynamo", "legacy"] if exporter == "auto" else [exporter]
    for kind in tries:
        try:
            with _quiet(), torch.no_grad():
                if kind == "dynamo":
                    from torch.export import Dim

                    torch.onnx.export(
                        encoder, (example,), str(tmp), dynamo=True, external_data=False, optimize=True,
                        verbose=False, opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                        dynamic_shapes=({0: Dim("batch")},) if dynamic_batch else None,
                    )
                else:
                    torch.onnx.export(
                        encoder, (example,), str(tmp), dynamo=False, verbose=False, opset_version=opset,
                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True,
                        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None,
                    )
            if not tmp.is_file() or tmp.stat().st_size == 0:
                raise RuntimeError("the exporter wrote no file")
            return f"torch.onnx.export(dynamo={kind == 'dynamo'})"
        except ImportError as exc:
            errors.append(f"{kind}: missing package {exc.name or exc} (pip install 'twinshot[export]')")
        except Exception as exc:  # the exporters raise many types
            errors.append(f"{kind}: {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise TwinshotError(f"ONNX export failed: {'; '.join(errors)}")


def written_opset(path: Path) -> int | None:
    """The default-domain opset an ONNX file actually declares (None if it declares none)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def check_opset(opset: object) -> int:
    """``opset`` if it is a whole number between :data:`MIN_OPSET` and the newest opset the
    installed ``onnx`` knows; ConfigError otherwise."""
    try:
        import onnx

        newest = int(onnx.defs.onnx_opset_version())
    except ImportError:
        newest = DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ConfigError(f"ONNX opset must be a whole number from {MIN_OPSET} to {newest}, got {opset!r}")
    return opset


def _export_torchscript(encoder: torch.nn.Module, example: torch.Tensor, tmp: Path) -> str:
    with _quiet(), torch.no_grad():
        try:
            traced = torch.jit.trace(encoder, (example,), check_trace=False)
            torch.jit.save(traced, str(tmp))
        except Exception as exc:
            raise TwinshotError(f"TorchScript export failed: {exc.__class__.__name__}: {exc}") from None
    return "torch.jit.trace"


def run_exported(fmt: str, path: Path, x: np.ndarray) -> np.ndarray:
    """Embed float32 input ``x (B, C, H, W)`` with an exported file: ``(B, D)`` float32
    (ONNX through ONNX Runtime, TorchScript through ``torch.jit.load``)."""
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise TwinshotError("checking an ONNX export needs onnxruntime: pip install 'twinshot[export]'") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return np.asarray(session.run(None, {name: np.ascontiguousarray(x, np.float32)})[0], np.float32)
    with _quiet(), torch.no_grad():
        module = torch.jit.load(str(path), map_location="cpu")
        return module(torch.from_numpy(np.ascontiguousarray(x, np.float32))).float().numpy()


# -- the sidecar ---------------------------------------------------------------------------


def _versions(fmt: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import twinshot

    out = {"twinshot": twinshot.__version__, "torch": torch.__version__, "numpy": np.__version__}
    for pkg in (("onnx", "onnxscript", "onnxruntime") if fmt == "onnx" else ()):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def preprocessing_steps(model: SiameseNetwork) -> list[str]:
    """The preprocessing, spelled out for a runtime without twinshot."""
    p = model.preprocessing
    h, w = p.size
    steps = [
        f"decode the image with PIL and convert it to mode {'RGB' if p.channels == 3 else 'L'} ({p.channels} channel{'s' if p.channels > 1 else ''})",
        *([f"pad it, centred, to the aspect ratio {h}:{w} (height:width) with {'white' if p.invert else 'black'}"] if p.keep_aspect else []),
        f"if it is not {w}x{h} (width x height), resize it to that size with PIL bilinear resampling",
        "as uint8 (C, H, W)",
    ]
    if p.invert:
        steps.append("invert: v = 255 - v")
    steps.append("x = float32(v) / 255")
    if p.mean != 0.0 or p.std != 1.0:
        steps.append(f"x = (x - {p.mean!r}) / {p.std!r}")
    steps.append(f"stack to float32 (B, {p.channels}, {h}, {w}) and feed input {INPUT_NAME!r}")
    return steps


def _sidecar(
    model: SiameseNetwork, *, fmt: str, file: Path, sha256: str, size: int, source: str, fp: str,
    exporter: str, opset: int | None, dynamic_batch: bool, parity: dict[str, Any],
) -> dict[str, Any]:
    p = model.preprocessing
    c, (h, w), d = p.channels, p.size, model.embedding_dim
    batch: Any = "batch" if dynamic_batch else 1
    spec = model.spec.to_dict() if model.spec is not None else None
    return {
        "format": SIDECAR_FORMAT,
        "model_format": fmt,
        "file": file.name,
        "sha256": sha256,
        "bytes": size,
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": [batch, c, h, w], "layout": "NCHW",
                  "description": "preprocessed images (see preprocessing_steps)"},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": [batch, d]},
        "embedding_dim": d,
        "normalized": bool(getattr(model.encoder, "normalized", False)),
        "preprocessing": p.to_dict(),
        "preprocessing_steps": preprocessing_steps(model),
        "head": head_to_dict(model.head, head_name(model)),
        "score": "logit = scale * similarity + bias (weighted_l1: similarity = sum(alpha * |e1 - e2|) + beta); "
                 "higher is more alike; probability = sigmoid(logit)",
        "spec": spec,
        "fingerprint": fp,
        "source": source,
        "exporter": exporter,
        "opset": opset,
        "dynamic_batch": dynamic_batch,
        "parity": parity,
        "versions": _versions(fmt),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# -- the one entry point -------------------------------------------------------------------


def export_model(
    model: ModelRef,
    fmt: str,
    out: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    batch_sizes: Sequence[int] = (1, 8),
    exporter: str = "auto",
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> ExportResult:
    """Export ``model``'s encoder to ``out`` (``"onnx"`` or ``"torchscript"``) with its
    JSON sidecar ``<out>.json``, after checking that the file embeds like the model.

    The file maps float32 ``(B, C, H, W)`` images, already preprocessed as the sidecar's
    ``preprocessing`` says, to float32 embeddings ``(B, D)`` (input ``"images"``, output
    ``"embeddings"``). Both files are written to temporary names and renamed only after
    the parity check passes; an existing ``out`` is replaced.

    Args:
        model: a :class:`SiameseNetwork`, or a model reference (shipped name, checkpoint,
            run directory; see :func:`twinshot.models.load_model`).
        fmt: ``"onnx"`` or ``"torchscript"``.
        out: the file to write.
        opset: the ONNX opset.
        dynamic_batch: ONNX only: let the file take any batch size (else batch 1 only, and
            the parity check runs on batch 1). TorchScript files always take any batch size.
        tolerance: the largest accepted absolute difference of any embedding value.
        batch_sizes: the sample batches of the parity check.
        exporter: ONNX only: ``"auto"`` (dynamo, else legacy), ``"dynamo"`` or ``"legacy"``.
        seed: seeds the random sample images.
        progress: called as ``progress(stage, done, total)`` before each step: loading the
            model, exporting, and running the file on each sample batch.

    Raises:
        ConfigError: an unknown format or exporter, or ``out`` is a directory.
        ParityError: the embeddings differ by more than ``tolerance`` (nothing is written).
        TwinshotError: the model cannot be loaded or exported.
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; valid: {', '.join(EXPORT_FORMATS)}")
    if exporter not in ONNX_EXPORTERS:
        raise ConfigError(f"unknown ONNX exporter {exporter!r}; valid: {', '.join(ONNX_EXPORTERS)}")
    if fmt == "onnx":
        opset = check_opset(opset)
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ConfigError(f"tolerance must be a finite number >= 0, got {tolerance}")
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise ConfigError(f"batch_sizes must be positive, got {list(batch_sizes)}")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{out}: is a directory; give the file to write (e.g. {out / ('encoder.' + ('onnx' if fmt == 'onnx' else 'pt'))})")
    start = time.perf_counter()
    steps = 2 + (1 if fmt == "onnx" and not dynamic_batch else len(sizes))

    def step(stage: str, done: int) -> None:
        if progress is not None:
            progress(stage, done, steps)

    step("load the model", 0)
    net, source = resolve(model)
    if not getattr(net.encoder, "exportable", True):
        enc = net.spec.encoder if net.spec is not None else type(net.encoder).__name__
        raise ConfigError(f"the {enc} encoder computes handcrafted features in numpy: it cannot be exported to {fmt}; use the model with torch")
    from twinshot.models.io import fingerprint

    fp = fingerprint(net)
    encoder = copy.deepcopy(net.encoder).cpu().eval()
    if fmt == "onnx" and not dynamic_batch:
        sizes = [1]
    with torch.no_grad():
        samples = {b: sample_inputs(net, b, seed) for b in sizes}
        expected = {b: encoder(x).float().numpy() for b, x in samples.items()}
    example = sample_inputs(net, 2 if dynamic_batch else 1, seed + 1000)

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path_beside(out)
    except OSError as exc:
        raise TwinshotError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    side_tmp: Path | None = None
    try:
        step(f"export to {fmt}", 1)
        if fmt == "onnx":
            used = _export_onnx(encoder, example, tmp, opset=opset, dynamic_batch=dynamic_batch, exporter=exporter)
            actual = written_opset(tmp)
            if actual != opset:  # the sidecar must say what the file holds
                raise ConfigError(
                    f"the ONNX exporter ({used}) wrote opset {actual}, not the requested {opset}; export with "
                    f"--opset {actual} (or another exporter); nothing was written"
                )
        else:
            used = _export_torchscript(encoder, example, tmp)
        diffs: dict[int, float] = {}
        for i, (b, x) in enumerate(samples.items()):
            step(f"check parity (batch {b})", 2 + i)
            got = run_exported(fmt, tmp, x.numpy())
            if got.shape != expected[b].shape:
                raise ParityError(
                    f"export of {source or 'the model'} to {fmt} failed the parity check: batch {b} gave embeddings "
                    f"of shape {tuple(got.shape)}, the model {tuple(expected[b].shape)}; nothing was written"
                )
            diffs[b] = float(np.max(np.abs(got.astype(np.float64) - expected[b]))) if got.size else 0.0
        worst = max(diffs.values())
        if not math.isfinite(worst) or worst > tolerance:
            bad = max(diffs, key=lambda k: diffs[k] if math.isfinite(diffs[k]) else math.inf)
            raise ParityError(
                f"export of {source or 'the model'} to {fmt} failed the parity check: max |difference| of embeddings "
                f"{worst:.3g} > tolerance {tolerance:g} (batch {bad}); nothing was written"
            )
        size = tmp.stat().st_size
        parity = {
            "max_abs_diff": worst,
            "tolerance": tolerance,
            "batch_sizes": sizes,
            "per_batch": {str(k): v for k, v in diffs.items()},
            "inputs": f"random uint8 images (seed {seed}) through the preprocessing",
            "runtime": "onnxruntime" if fmt == "onnx" else "torch.jit.load",
            "passed": True,
        }
        meta = _sidecar(
            net, fmt=fmt, file=out, sha256=file_sha256(tmp), size=size, source=source, fp=fp, exporter=used,
            opset=opset if fmt == "onnx" else None, dynamic_batch=dynamic_batch or fmt == "torchscript", parity=parity,
        )
        side = sidecar_path(out)
        side_tmp = temp_path_beside(side)
        side_tmp.write_text(json.dumps(meta, indent=2), encoding="utf-8")
        for written in (tmp, side_tmp):  # mkstemp makes 0600 files; exports are meant to be shared
            os.chmod(written, 0o644)
        os.replace(tmp, out)
        os.replace(side_tmp, side)
        step("done", steps)
    except BaseException:
        for leftover in (tmp, Path(str(tmp) + ".data"), side_tmp):
            if leftover is not None:
                leftover.unlink(missing_ok=True)
        raise
    c, (h, w) = net.preprocessing.channels, net.preprocessing.size
    return ExportResult(
        path=out, sidecar=side, format=fmt, exporter=used, opset=meta["opset"], max_abs_diff=worst,
        tolerance=tolerance, parity=diffs, fingerprint=fp, source=source, input_shape=(c, h, w),
        embedding_dim=net.embedding_dim, dynamic_batch=meta["dynamic_batch"], bytes=size,
        seconds=time.perf_counter() - start,
    )
