"""Export: a model's encoder to ONNX or TorchScript with a parity check, and a torch-free
ONNX Runtime path to embed images and score pairs. See ``docs/export.md``.

* :func:`export_model` (torch) writes ``FILE`` and its JSON sidecar ``FILE.json``;
* :class:`OnnxEmbedder` (numpy, PIL and onnxruntime only) runs an exported ONNX file;
* :class:`NumpyHead` scores pairs of embeddings like the model's head.

Names are imported on first use, so ``import twinshot.export.onnx_runtime`` (or
``from twinshot.export import OnnxEmbedder``) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "export_model": "twinshot.export.exporter",
    "ExportResult": "twinshot.export.exporter",
    "ParityError": "twinshot.export.exporter",
    "DEFAULT_TOLERANCE": "twinshot.export.exporter",
    "OnnxEmbedder": "twinshot.export.onnx_runtime",
    "NumpyHead": "twinshot.export.numpy_heads",
    "pairwise_logits": "twinshot.export.numpy_heads",
    "sigmoid": "twinshot.export.numpy_heads",
    "EXPORT_FORMATS": "twinshot.export.sidecar",
    "read_sidecar": "twinshot.export.sidecar",
    "sidecar_path": "twinshot.export.sidecar",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'twinshot.export' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
