"""Turning the images a user hands the gallery into embeddings, in batches, and keeping
the original image bytes when the gallery keeps images.

The gallery talks to its model through the :class:`Embedder` protocol, so the same gallery
runs on a torch model (:class:`TorchEmbedder`) or on an exported ONNX encoder
(:class:`twinshot.export.OnnxEmbedder`, which never imports torch). This module imports
torch only when it is handed a torch model or tensor.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from twinshot.errors import DataError
from twinshot.preprocessing import Preprocessing, array_to_pil, decode_image_array, describe_source

#: ``progress(done, total)``.
BatchProgress = Callable[[int, int], None]


@runtime_checkable
class Embedder(Protocol):
    """What the gallery needs from a model: decode settings, an image -> embedding map and
    the head that scores pairs (higher is more alike).

    Attributes:
        preprocessing: how images are decoded and sized.
        embedding_dim: D.
        fingerprint: the source model's fingerprint (:func:`twinshot.models.io.fingerprint`);
            a gallery stores it and refuses an embedder with another one.
        head: the comparison head: a torch :class:`twinshot.models.heads.Head` or a
            :class:`twinshot.export.numpy_heads.NumpyHead` (``None``: no numpy form).
        head_name: the head's registered name (``"cosine"``, ``"euclidean"``, ``"weighted_l1"``...).
    """

    preprocessing: Preprocessing
    embedding_dim: int
    fingerprint: str
    head: Any
    head_name: str

    def embed_images(self, images: Any, batch_size: int | None = None) -> np.ndarray:
        """uint8 ``(N, C, H, W)`` at the model's size -> float32 ``(N, D)``."""
        ...

    def logits(self, e1: Any, e2: Any) -> np.ndarray:
        """Logits ``(B,)`` of row-aligned embeddings ``(B, D)``."""
        ...

    def pairwise_logits(self, a: Any, b: Any) -> np.ndarray:
        """Logits ``(Q, N)`` of every row of ``a (Q, D)`` against every row of ``b (N, D)``."""
        ...


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _to_numpy(x: Any) -> np.ndarray:
    if _is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class TorchEmbedder:
    """:class:`Embedder` around a :class:`twinshot.models.SiameseNetwork` (torch eager).

    Args:
        model: the network (put in eval mode); embeddings are computed on its device.
    """

    backend = "torch"

    def __init__(self, model: Any) -> None:
        self.model = model.eval()
        self.preprocessing: Preprocessing = model.preprocessing
        self.embedding_dim = int(model.embedding_dim)
        self.head = model.head
        self.head_name = _head_name(model)
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:  # type: ignore[override]
        """:func:`twinshot.models.io.fingerprint` of the model (hashes the weights once)."""
        if self._fingerprint is None:
            from twinshot.models.io import fingerprint

            self._fingerprint = fingerprint(self.model)
        return self._fingerprint

    def __repr__(self) -> str:
        return f"TorchEmbedder(D={self.embedding_dim}, head={self.head_name!r})"

    @property
    def device(self) -> Any:
        import torch

        return next((p.device for p in self.model.parameters()), torch.device("cpu"))

    def embed_images(self, images: Any, batch_size: int | None = None) -> np.ndarray:
        import torch

        x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
        if x.ndim == 3:
            x = x[None]
        with torch.no_grad():
            return self.model.embed_images(x.to(self.device), batch_size=batch_size or 256).float().cpu().numpy()

    def logits(self, e1: Any, e2: Any) -> np.ndarray:
        import torch

        dev = self.device
        with torch.no_grad():
            a = torch.as_tensor(np.asarray(_to_numpy(e1), np.float32)).to(dev)
            b = torch.as_tensor(np.asarray(_to_numpy(e2), np.float32)).to(dev)
            return self.model.head(a, b).float().cpu().numpy()

    def pairwise_logits(self, a: Any, b: Any) -> np.ndarray:
        import torch

        dev = self.device
        with torch.no_grad():
            qa = torch.as_tensor(np.asarray(_to_numpy(a), np.float32)).to(dev)
            qb = torch.as_tensor(np.asarray(_to_numpy(b), np.float32)).to(dev)
            return self.model.head.pairwise_logits(qa, qb).float().cpu().numpy()


def _head_name(model: Any) -> str:
    spec = getattr(model, "spec", None)
    if spec is not None:
        return str(spec.head)
    from twinshot.models.heads import CosineHead, EuclideanHead

    if isinstance(model.head, CosineHead):
        return "cosine"
    if isinstance(model.head, EuclideanHead):
        return "euclidean"
    return type(model.head).__name__


def as_embedder(model: Any) -> Embedder:
    """An :class:`Embedder` for ``model``: a torch :class:`SiameseNetwork` is wrapped in a
    :class:`TorchEmbedder`; an embedder is returned as it is."""
    if isinstance(model, TorchEmbedder) or not _is_torch_module(model):
        return model
    return TorchEmbedder(model)


def _is_torch_module(model: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def as_sequence(images: Any) -> list[Any]:
    """One image or several, as a list: a path, bytes, a PIL image or a 2-D/3-D
    array/tensor is one image; a 4-D array/tensor is a batch; anything else is iterated."""
    if isinstance(images, (str, os.PathLike, bytes, bytearray)):
        return [bytes(images) if isinstance(images, bytearray) else images]
    if isinstance(images, np.ndarray) or _is_tensor(images):
        return list(images) if images.ndim == 4 else [images]
    from PIL import Image

    if isinstance(images, Image.Image):
        return [images]
    return list(images)


def describe(source: Any, i: int) -> str:
    """How image ``i`` of a request is named in messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"image #{i + 1} ({type(source).__name__})"


def model_device(model: Any) -> Any:
    """The device of a torch model's parameters (CPU when it has none)."""
    import torch

    return next((p.device for p in model.parameters()), torch.device("cpu"))


def embed_uint8(model: Any, images: Any, *, batch_size: int = 256, progress: BatchProgress | None = None) -> np.ndarray:
    """Embed uint8 images ``(N, C, H, W)`` (numpy or torch) already at the model's size,
    ``batch_size`` at a time, with a torch model or any :class:`Embedder`. Returns float32
    ``(N, D)`` (numpy)."""
    embedder = as_embedder(model)
    n = int(images.shape[0])
    out = np.empty((n, embedder.embedding_dim), np.float32)
    for i in range(0, n, batch_size):
        batch = images[i : i + batch_size]
        out[i : i + batch.shape[0]] = embedder.embed_images(batch, batch_size)
        if progress is not None:
            progress(min(n, i + batch_size), n)
    return out


def decode(sources: Sequence[Any], model: Any) -> np.ndarray:
    """Decode images with the model's preprocessing into uint8 ``(N, C, H, W)`` (numpy);
    the error names the image that cannot be read."""
    if len(sources) == 0:
        raise DataError("no images given")
    p = model.preprocessing
    out = np.empty((len(sources), p.channels, p.size[0], p.size[1]), np.uint8)
    for i, src in enumerate(sources):
        if isinstance(src, (str, os.PathLike)) and os.path.isdir(src):
            raise DataError(f"{src}: is a folder, not an image file")
        try:
            out[i] = decode_image_array(_to_numpy(src) if _is_tensor(src) else src, p, name=describe_source(src))
        except DataError as exc:
            if isinstance(src, (str, os.PathLike)):
                raise
            raise DataError(f"{describe(src, i)}: {exc}") from None
    return out


def embed_sources(
    model: Any,
    sources: Sequence[Any],
    *,
    batch_size: int = 256,
    progress: BatchProgress | None = None,
) -> np.ndarray:
    """Decode and embed images (paths, bytes, arrays, tensors, PIL images) ``batch_size`` at
    a time with a torch model or an :class:`Embedder`. Every image is decoded before any is
    embedded, so a bad one fails fast. Returns float32 ``(N, D)``."""
    return embed_uint8(model, decode(sources, model), batch_size=batch_size, progress=progress)


def encode_original(source: Any) -> bytes:
    """The bytes to keep for an image: a file's own bytes, given bytes as they are, and a
    lossless PNG of an array, tensor or PIL image."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            return Path(source).read_bytes()
        except OSError as exc:
            raise DataError(f"{source}: cannot read ({exc.__class__.__name__})") from None
    from PIL import Image

    if _is_tensor(source):
        source = _to_numpy(source)
    img = source if isinstance(source, Image.Image) else array_to_pil(np.asarray(source), "image")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def read_listing_bytes(listing: Any) -> list[bytes]:
    """The original bytes of every image of a folder/zip listing
    (:func:`twinshot.data.sources.list_images`)."""
    import zipfile

    if listing.is_zip:
        with zipfile.ZipFile(listing.source) as zf:
            return [zf.read(m) for m in listing.members]
    return [(Path(listing.source) / m).read_bytes() for m in listing.members]
