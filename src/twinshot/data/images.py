"""Decoding one image from any source into the uint8 tensor a model expects.

Every image that enters twinshot (a dataset file, a gallery enrollment, an HTTP upload)
goes through :func:`load_image`, so resizing, grey/colour conversion and Omniglot's
ink inversion happen in exactly one place, described by a :class:`Preprocessing`.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from twinshot.errors import DataError

ImageSource = Union[str, os.PathLike, bytes, np.ndarray, torch.Tensor, Image.Image]

#: Images with more pixels than this are refused before decoding (decompression bombs).
DEFAULT_MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class Preprocessing:
    """How raw images become model input. Stored with every model and gallery.

    Attributes:
        size: ``(height, width)`` the image is resized to.
        channels: 1 (grey) or 3 (RGB).
        invert: replace each grey level ``v`` by ``255 - v`` after decoding. Set for
            dark ink on light paper (Omniglot, signatures) so that ink is the foreground
            (high values) and padding or background is zero.
        mean, std: after scaling to [0, 1], ``x = (x - mean) / std`` (same for every channel).
    """

    size: tuple[int, int] = (105, 105)
    channels: int = 1
    invert: bool = False
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        if len(self.size) != 2 or min(self.size) < 1:
            raise DataError(f"preprocessing size must be (height, width) > 0, got {self.size}")
        if self.channels not in (1, 3):
            raise DataError(f"preprocessing channels must be 1 or 3, got {self.channels}")
        if self.std <= 0:
            raise DataError(f"preprocessing std must be > 0, got {self.std}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        return cls(**d)

    def to_float(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, C, H, W)`` (or ``(C, H, W)``) to normalised float32 model input."""
        x = images.float().div_(255.0)
        if self.mean != 0.0 or self.std != 1.0:
            x = x.sub_(self.mean).div_(self.std)
        return x


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<{type(source).__name__}>"


def _open_pil(source: ImageSource, max_pixels: int) -> Image.Image:
    """Open (lazily) a PIL image from a path, bytes or PIL image, refusing bombs."""
    name = _describe(source)
    if isinstance(source, Image.Image):
        img = source
    else:
        try:
            if isinstance(source, bytes):
                if not source:
                    raise DataError("empty image: 0 bytes")
                img = Image.open(io.BytesIO(source))
            else:
                path = Path(source)
                if not path.is_file():
                    raise DataError(f"{name}: no such image file")
                img = Image.open(path)
        except DataError:
            raise
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DataError(f"{name}: not a readable image ({exc.__class__.__name__})") from None
    w, h = img.size
    if w * h > max_pixels:
        raise DataError(
            f"{name}: image of {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} pixels"
        )
    return img


def _array_to_pil(arr: np.ndarray, name: str) -> Image.Image:
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise DataError(f"{name}: array of shape {arr.shape} is not an (H, W) or (H, W, 3) image")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        arr = np.asarray(arr, dtype=np.float64)
        if arr.size and arr.max() <= 1.0 and arr.min() >= 0.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


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
    name = _describe(source)
    if isinstance(source, torch.Tensor):
        source = source.detach().cpu().numpy()
    if isinstance(source, np.ndarray):
        if source.size > max_pixels * 3:
            raise DataError(f"{name}: array of {source.size} values exceeds the pixel limit")
        img = _array_to_pil(source, name)
    else:
        img = _open_pil(source, max_pixels)
    try:
        mode = "RGB" if preprocessing.channels == 3 else "L"
        if img.mode != mode:
            img = img.convert(mode)
        h, w = preprocessing.size
        if img.size != (w, h):
            img = img.resize((w, h), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{name}: truncated or corrupt image ({exc})") from None
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = np.ascontiguousarray(arr.transpose(2, 0, 1))
    tensor = torch.from_numpy(arr.copy())
    if preprocessing.invert:
        tensor = 255 - tensor
    return tensor


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
