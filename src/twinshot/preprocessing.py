"""Turning an image into model input without torch: :class:`Preprocessing` and
:func:`decode_image_array`.

This is the one implementation of twinshot's image decoding (resize, grey/colour
conversion, Omniglot's ink inversion, normalisation). :func:`twinshot.data.images.load_image`
wraps it for torch, and :class:`twinshot.export.onnx_runtime.OnnxEmbedder` uses it as is, so
an exported model sees exactly the pixels the torch model saw. It imports only numpy and
PIL (it lives outside :mod:`twinshot.data`, whose ``__init__`` imports torch).
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from twinshot.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: What :func:`decode_image_array` accepts: a path, encoded bytes, a numpy array or a PIL image.
ArraySource = Union[str, os.PathLike, bytes, np.ndarray, Image.Image]

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
        keep_aspect: pad the image to the target's aspect ratio (centred, with paper:
            white when ``invert``, else black) before resizing, so shapes are not
            stretched (whole signatures); False stretches to ``size``.
    """

    size: tuple[int, int] = (105, 105)
    channels: int = 1
    invert: bool = False
    mean: float = 0.0
    std: float = 1.0
    keep_aspect: bool = False

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
        if not self.keep_aspect:  # absent when off: older models' fingerprints are unchanged
            del d["keep_aspect"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        return cls(**d)

    def to_float(self, images: "torch.Tensor") -> "torch.Tensor":
        """uint8 ``(B, C, H, W)`` (or ``(C, H, W)``) to normalised float32 model input."""
        x = images.float().div_(255.0)
        if self.mean != 0.0 or self.std != 1.0:
            x = x.sub_(self.mean).div_(self.std)
        return x


def to_float_array(images: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """:meth:`Preprocessing.to_float` in numpy: uint8 ``(B, C, H, W)`` (or ``(C, H, W)``) to
    float32 model input, bit-for-bit equal to the torch version."""
    x = np.asarray(images).astype(np.float32)
    x /= np.float32(255.0)
    if preprocessing.mean != 0.0 or preprocessing.std != 1.0:
        x -= np.float32(preprocessing.mean)
        x /= np.float32(preprocessing.std)
    return x


def describe_source(source: Any) -> str:
    """How an image source is named in error messages: its path, else its type."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<{type(source).__name__}>"


def open_pil(source: str | os.PathLike | bytes | Image.Image, max_pixels: int) -> Image.Image:
    """Open (lazily) a PIL image from a path, bytes or PIL image, refusing bombs."""
    name = describe_source(source)
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
        except Image.DecompressionBombError:
            # PIL refuses images over twice its own limit before we can read the size.
            raise DataError(f"{name}: image exceeds the limit of {max_pixels} pixels (decompression bomb)") from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DataError(f"{name}: not a readable image ({exc.__class__.__name__})") from None
    w, h = img.size
    if w * h > max_pixels:
        raise DataError(
            f"{name}: image of {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} pixels"
        )
    return img


def array_to_pil(arr: np.ndarray, name: str) -> Image.Image:
    """An ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` array (uint8 0-255, bool, or float
    0-1 / 0-255) as a PIL image."""
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


def pad_to_aspect(img: Image.Image, ratio: float, fill: int) -> Image.Image:
    """``img`` centred on a canvas of height/width ``ratio`` filled with ``fill`` (every
    channel), the smallest that holds it; unchanged when it already has that ratio."""
    w, h = img.size
    cw, ch = max(w, int(round(h / ratio))), max(h, int(round(w * ratio)))
    if (cw, ch) == (w, h):
        return img
    canvas = Image.new(img.mode, (cw, ch), (fill,) * len(img.getbands()) if len(img.getbands()) > 1 else fill)
    canvas.paste(img, ((cw - w) // 2, (ch - h) // 2))
    return canvas


def decode_image_array(
    source: ArraySource,
    preprocessing: Preprocessing,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> np.ndarray:
    """Decode, convert and resize one image (the numpy core of
    :func:`twinshot.data.images.load_image`).

    Args:
        source: a path, the encoded bytes of a file, a PIL image, or an array of shape
            ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` (uint8 0-255, or float 0-1).
        preprocessing: the target size, channels and inversion.
        max_pixels: refuse images with more pixels than this, before decoding them.
        name: how the image is named in error messages (default: its path or type).

    Returns:
        a new, writable, C-contiguous uint8 array of shape ``(channels, height, width)``.

    Raises:
        DataError: naming the file when it is missing, unreadable, truncated or too large.
    """
    name = describe_source(source) if name is None else name
    if isinstance(source, np.ndarray):
        if source.size > max_pixels * 3:
            raise DataError(f"{name}: array of {source.size} values exceeds the pixel limit")
        img = array_to_pil(source, name)
    else:
        img = open_pil(source, max_pixels)
    try:
        mode = "RGB" if preprocessing.channels == 3 else "L"
        if img.mode != mode:
            img = img.convert(mode)
        h, w = preprocessing.size
        if preprocessing.keep_aspect:
            img = pad_to_aspect(img, h / w, 255 if preprocessing.invert else 0)
        if img.size != (w, h):
            img = img.resize((w, h), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{name}: truncated or corrupt image ({exc})") from None
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    out = np.array(arr, dtype=np.uint8, copy=True, order="C")
    if preprocessing.invert:
        np.subtract(255, out, out=out)
    return out
