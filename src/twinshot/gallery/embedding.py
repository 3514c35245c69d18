"""Turning the images a user hands the gallery into embeddings, in batches, and keeping
the original image bytes when the gallery keeps images."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from twinshot.data.images import ImageSource, _array_to_pil, load_image
from twinshot.errors import DataError

#: ``progress(done, total)``.
BatchProgress = Callable[[int, int], None]


def as_sequence(images: Any) -> list[Any]:
    """One image or several, as a list: a path, bytes, a PIL image or a 2-D/3-D
    array/tensor is one image; a 4-D array/tensor is a batch; anything else is iterated."""
    if isinstance(images, (str, os.PathLike, bytes, bytearray)):
        return [bytes(images) if isinstance(images, bytearray) else images]
    if isinstance(images, (np.ndarray, torch.Tensor)):
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


def model_device(model: torch.nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@torch.no_grad()
def embed_uint8(model: Any, images: torch.Tensor, *, batch_size: int = 256, progress: BatchProgress | None = None) -> np.ndarray:
    """Embed uint8 images ``(N, C, H, W)`` already at the model's size, ``batch_size`` at a
    time on the model's device. Returns float32 ``(N, D)`` (numpy)."""
    device = model_device(model)
    n = int(images.shape[0])
    out = np.empty((n, model.embedding_dim), np.float32)
    for i in range(0, n, batch_size):
        batch = images[i : i + batch_size].to(device)
        out[i : i + batch.shape[0]] = model.embed_images(batch, batch_size=batch_size).float().cpu().numpy()
        if progress is not None:
            progress(min(n, i + batch_size), n)
    return out


def decode(sources: Sequence[ImageSource], model: Any) -> torch.Tensor:
    """Decode images with the model's preprocessing into uint8 ``(N, C, H, W)``; the
    error names the image that cannot be read."""
    if len(sources) == 0:
        raise DataError("no images given")
    out = []
    for i, src in enumerate(sources):
        try:
            out.append(load_image(src, model.preprocessing))
        except DataError as exc:
            if isinstance(src, (str, os.PathLike)):
                raise
            raise DataError(f"{describe(src, i)}: {exc}") from None
    return torch.stack(out)


def embed_sources(
    model: Any,
    sources: Sequence[ImageSource],
    *,
    batch_size: int = 256,
    progress: BatchProgress | None = None,
) -> np.ndarray:
    """Decode and embed images (paths, bytes, arrays, tensors, PIL images) ``batch_size`` at
    a time. Every image is decoded before any is embedded, so a bad one fails fast.
    Returns float32 ``(N, D)``."""
    return embed_uint8(model, decode(sources, model), batch_size=batch_size, progress=progress)


def encode_original(source: ImageSource) -> bytes:
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

    if isinstance(source, torch.Tensor):
        source = source.detach().cpu().numpy()
    img = source if isinstance(source, Image.Image) else _array_to_pil(np.asarray(source), "image")
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
