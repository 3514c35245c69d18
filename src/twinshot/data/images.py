"""Decoding one image from any source into the uint8 tensor a model expects.

Every image that enters twinshot (a dataset file, a gallery enrollment, an HTTP upload)
goes through :func:`load_image`, so resizing, grey/colour conversion and Omniglot's
ink inversion happen in exactly one place, described by a :class:`Preprocessing`. The
decoding itself is :func:`twinshot.preprocessing.decode_image_array` (numpy and PIL only),
which the torch-free ONNX Runtime path shares.
"""

from __future__ import annotations

import os
from typing import Union

import numpy as np
import torch
from PIL import Image

from twinshot.errors import DataError
from twinshot.preprocessing import (
    DEFAULT_MAX_PIXELS,
    Preprocessing,
    array_to_pil,
    decode_image_array,
    describe_source,
    open_pil,
)

ImageSource = Union[str, os.PathLike, bytes, np.ndarray, torch.Tensor, Image.Image]

# The torch-free implementation lives in :mod:`twinshot.preprocessing`; these names are
# kept for the modules that import them from here.
_describe = describe_source
_open_pil = open_pil
_array_to_pil = array_to_pil


def load_image(
    source: ImageSource,
    preprocessing: Preprocessing,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """Decode, convert and resize one image.

    Args:
        source: a path, the encoded bytes of a file, a PIL image, or an array/tensor of
            shape ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` (uint8 0-255, or float 0-1).
        preprocessing: the target size, channels and inversion.
        max_pixels: refuse images with more pixels than this, before decoding them.

    Returns:
        uint8 tensor of shape ``(channels, height, width)``.

    Raises:
        DataError: naming the file when it is missing, unreadable, truncated or too large.
    """
    name = describe_source(source)
    if isinstance(source, torch.Tensor):
        source = source.detach().cpu().numpy()
    return torch.from_numpy(decode_image_array(source, preprocessing, max_pixels=max_pixels, name=name))


def load_images(
    sources: list[ImageSource] | tuple[ImageSource, ...],
    preprocessing: Preprocessing,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """Decode several images into one uint8 tensor ``(N, C, H, W)``.

    A 4-D tensor or array is taken as an already-decoded batch and only resized.
    """
    if isinstance(sources, (torch.Tensor, np.ndarray)) and getattr(sources, "ndim", 0) == 4:
        sources = list(sources)
    if len(sources) == 0:
        raise DataError("no images given")
    return torch.stack([load_image(s, preprocessing, max_pixels=max_pixels) for s in sources])
