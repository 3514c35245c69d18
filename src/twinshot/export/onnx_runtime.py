"""Embedding images and scoring pairs with an exported ONNX encoder, without torch.

:class:`OnnxEmbedder` opens a file written by ``twinshot export MODEL --format onnx`` and
its JSON sidecar, decodes images exactly as :func:`twinshot.data.images.load_image` does
(both call :func:`twinshot.preprocessing.decode_image_array`), embeds them with ONNX
Runtime, and scores pairs with the model's head in numpy
(:class:`twinshot.export.numpy_heads.NumpyHead`).

This module imports numpy, PIL and onnxruntime only; importing it, embedding and scoring
never import torch.

>>> emb = OnnxEmbedder("encoder.onnx")                        # doctest: +SKIP
>>> e = emb.embed(["a.png", "b.png"])                         # (2, D) float32
>>> logit = emb.logits(e[:1], e[1:])[0]                       # higher is more alike
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from twinshot.errors import ConfigError, DataError, TwinshotError
from twinshot.export.numpy_heads import NumpyHead
from twinshot.export.sidecar import file_sha256, read_sidecar, sidecar_path
from twinshot.preprocessing import DEFAULT_MAX_PIXELS, Preprocessing, decode_image_array, to_float_array


def _as_sources(images: Any) -> list[Any]:
    """One image or several, as a list: a path, bytes or PIL image, or a 2-D/3-D array,
    is one image; a 4-D array is a batch; anything else is iterated."""
    if isinstance(images, (str, os.PathLike, bytes, bytearray)):
        return [bytes(images) if isinstance(images, bytearray) else images]
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    from PIL import Image

    if isinstance(images, Image.Image):
        return [images]
    return list(images)


class OnnxEmbedder:
    """An exported encoder run by ONNX Runtime, with the model's preprocessing and head.

    Args:
        path: the ``.onnx`` file; its sidecar ``<path>.json`` must be beside it.
        threads: ONNX Runtime intra-op threads (default: ONNX Runtime's choice, one per core).
        check_hash: refuse a file whose SHA-256 is not the sidecar's (a sidecar of
            another export).
        batch_size: images per ONNX Runtime call in :meth:`embed_images`.

    Attributes:
        preprocessing: how images are decoded (:class:`twinshot.preprocessing.Preprocessing`).
        embedding_dim: D.
        fingerprint: the fingerprint of the torch model it was exported from (a gallery
            enrolled with that model holds the same fingerprint).
        head: the model's head in numpy, or ``None`` if it cannot be scored without torch.
        metadata: the whole sidecar.

    Raises:
        DataError: the file or its sidecar is missing or unreadable, or they do not match.
        TwinshotError: onnxruntime is not installed.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        threads: int | None = None,
        check_hash: bool = True,
        batch_size: int = 256,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such ONNX file")
        meta = read_sidecar(self.path, model_format="onnx")
        if check_hash and file_sha256(self.path) != meta["sha256"]:
            raise DataError(
                f"{self.path}: its bytes do not match {sidecar_path(self.path).name} (SHA-256 differs); "
                f"the sidecar belongs to another export"
            )
        try:
            import onnxruntime as ort
        except ImportError:
            raise TwinshotError("running an ONNX model needs onnxruntime: pip install 'twinshot[export]'") from None
        self.metadata: dict[str, Any] = meta
        self.preprocessing = Preprocessing.from_dict(meta["preprocessing"])
        self.embedding_dim = int(meta["embedding_dim"])
        self.fingerprint = str(meta["fingerprint"])
        self.normalized = bool(meta.get("normalized", False))
        head = meta["head"]
        self.head: NumpyHead | None = NumpyHead.from_dict(head) if head.get("numpy", True) else None
        self.head_name = str(head.get("name", ""))
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads is not None:
            opts.intra_op_num_threads = max(1, int(threads))
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own error types
            raise DataError(f"{self.path}: ONNX Runtime cannot load it ({exc.__class__.__name__}: {str(exc)[:200]})") from None
        inp = self.session.get_inputs()[0]
        self._input = inp.name
        batch = inp.shape[0] if inp.shape else None
        #: the one batch size the file takes, or None when it takes any.
        self.fixed_batch: int | None = batch if isinstance(batch, int) and batch > 0 else None

    def __repr__(self) -> str:
        return f"OnnxEmbedder({str(self.path)!r}, D={self.embedding_dim}, head={self.head_name!r})"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the uint8 images :meth:`embed_images` takes."""
        p = self.preprocessing
        return (p.channels, p.size[0], p.size[1])

    # -- images --------------------------------------------------------------------------

    def load(self, images: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """Decode images (paths, encoded bytes, PIL images, arrays; one or several) with
        the model's preprocessing, exactly as :func:`twinshot.data.images.load_images` does.

        Returns:
            uint8 ``(N, C, H, W)``.
        """
        sources = _as_sources(images)
        if not sources:
            raise DataError("no images given")
        out = np.empty((len(sources), *self.input_shape), np.uint8)
        for i, src in enumerate(sources):
            try:
                out[i] = decode_image_array(src, self.preprocessing, max_pixels=max_pixels)
            except DataError as exc:
                if isinstance(src, (str, os.PathLike)):
                    raise
                raise DataError(f"image #{i + 1} ({type(src).__name__}): {exc}") from None
        return out

    def embed_images(self, images: Any, batch_size: int | None = None) -> np.ndarray:
        """Embed uint8 images ``(N, C, H, W)`` already at the model's size (as
        :meth:`load` returns them), ``batch_size`` at a time.

        Returns:
            float32 ``(N, D)``.
        """
        x = np.asarray(images)
        if x.ndim == 3:
            x = x[None]
        if x.dtype != np.uint8:
            raise DataError(f"images must be uint8 (N, C, H, W) as load() returns them, got dtype {x.dtype}")
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise DataError(f"images of shape {tuple(x.shape)} do not match the model's input (N, {', '.join(map(str, self.input_shape))})")
        n = x.shape[0]
        out = np.empty((n, self.embedding_dim), np.float32)
        step = self.fixed_batch or batch_size or self.batch_size
        for i in range(0, n, step):
            batch = to_float_array(x[i : i + step], self.preprocessing)
            out[i : i + batch.shape[0]] = self.session.run(None, {self._input: batch})[0]
        return out

    def embed(self, images: Any, batch_size: int | None = None) -> np.ndarray:
        """Decode and embed images (see :meth:`load`): float32 ``(N, D)``."""
        return self.embed_images(self.load(images), batch_size)

    # -- scores --------------------------------------------------------------------------

    def _head(self) -> NumpyHead:
        if self.head is None:
            raise ConfigError(f"head {self.head_name!r} cannot be scored without torch; valid: cosine, euclidean, weighted_l1")
        return self.head

    def logits(self, e1: Any, e2: Any) -> np.ndarray:
        """Logits ``(B,)`` that the row-aligned embeddings ``e1, e2 (B, D)`` show one class
        (higher is more alike; ``sigmoid`` gives the probability)."""
        return self._head().logits(e1, e2)

    def pairwise_logits(self, a: Any, b: Any) -> np.ndarray:
        """Logits ``(Q, N)`` of every row of ``a (Q, D)`` against every row of ``b (N, D)``."""
        return self._head().pairwise_logits(a, b)

    def score_pair(self, image1: Any, image2: Any) -> float:
        """The logit that two images show the same class (what ``twinshot verify`` prints
        as its score; probability ``sigmoid(logit)``)."""
        e = self.embed([image1, image2])
        return float(self.logits(e[0:1], e[1:2])[0])


__all__ = ["OnnxEmbedder"]
