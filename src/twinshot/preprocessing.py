"""Turning an image into model input without torch: :class:`Preprocessing` and
:func:`decode_image_array`.

This is the one implementation of twinshot's image decoding (every PIL mode and bit depth
scaled to 8 bits, transparency over white paper, resize, grey/colour conversion,
Omniglot's ink inversion, normalisation) and of the refusal of images that must not be
compared with anything (no content, absurd aspect ratio: :class:`UnusableImageError`). :func:`twinshot.data.images.load_image`
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
from PIL import Image

from twinshot.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: What :func:`decode_image_array` accepts: a path, encoded bytes, a numpy array or a PIL image.
ArraySource = Union[str, os.PathLike, bytes, np.ndarray, Image.Image]

#: Images with more pixels than this are refused before decoding (decompression bombs).
DEFAULT_MAX_PIXELS = 40_000_000
#: Images whose longer side is more than this many times their shorter side are refused
#: (a 20000x1 strip is no picture of anything; the widest real images here, CEDAR's cropped
#: signatures, are under 6:1).
MAX_ASPECT_RATIO = 20.0
#: An image has content when at least :data:`MIN_CONTENT_FRACTION` of its pixels differ from
#: its median grey level (per channel) by at least :data:`CONTENT_CONTRAST` of 255. Blank,
#: one-colour or near-constant images (sensor noise on a wall) fail; the sparsest real image
#: here, an Omniglot character, has 0.23% of its pixels in ink (25 of 105x105).
CONTENT_CONTRAST = 32
MIN_CONTENT_FRACTION = 0.001
#: The content test reads at most about this many pixels (larger images are box-reduced).
_CONTENT_PIXELS = 1 << 20


#: Face aligners :attr:`Preprocessing.align` may name (``""``: none).
ALIGNERS = ("", "face-api", "face-api-centre")


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
        crop: keep this centred fraction of each side before resizing (1.0: the whole image).
        align: the name of a face aligner (``"face-api"``: detect the largest face, find its
            68 landmarks, warp it to ``size`` by a similarity transform; see
            :mod:`twinshot.faces.align`; ``"face-api-centre"``: the face at the centre, LFW's person),
            or ``""`` for none. It replaces ``crop`` and resize.
        keep_aspect: pad the image to the target's aspect ratio (centred, with paper:
            white when ``invert``, else black) before resizing, so shapes are not
            stretched (whole signatures); False stretches to ``size``.
    """

    size: tuple[int, int] = (105, 105)
    channels: int = 1
    invert: bool = False
    mean: float = 0.0
    std: float = 1.0
    crop: float = 1.0
    align: str = ""
    keep_aspect: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        if len(self.size) != 2 or min(self.size) < 1:
            raise DataError(f"preprocessing size must be (height, width) > 0, got {self.size}")
        if self.channels not in (1, 3):
            raise DataError(f"preprocessing channels must be 1 or 3, got {self.channels}")
        if self.std <= 0:
            raise DataError(f"preprocessing std must be > 0, got {self.std}")
        if not 0.0 < self.crop <= 1.0:
            raise DataError(f"preprocessing crop must be in (0, 1], got {self.crop}")
        if self.align not in ALIGNERS:
            raise DataError(f"preprocessing align must be one of {', '.join(map(repr, ALIGNERS))}, got {self.align!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        # fields added later are written only when set, so older models' fingerprints hold
        for key, default in (("crop", 1.0), ("align", ""), ("keep_aspect", False)):
            if d[key] == default:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        return cls(**d)

    def to_float(self, images: torch.Tensor) -> torch.Tensor:
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


class UnusableImageError(DataError):
    """A decoded image that must not be compared with anything: ``reason`` is
    ``"no_content"`` (blank, one colour, near-constant), ``"aspect_ratio"`` (over
    :data:`MAX_ASPECT_RATIO`) or ``"non_finite"`` (NaN or infinite pixel values)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


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
        except Exception as exc:  # UnidentifiedImageError, OSError, ValueError, and a damaged header's others
            raise DataError(f"{name}: not a readable image ({exc.__class__.__name__})") from None
    w, h = img.size
    if w * h > max_pixels:
        raise DataError(
            f"{name}: image of {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} pixels"
        )
    return img


def array_to_pil(arr: np.ndarray, name: str) -> Image.Image:
    """An ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` array as an 8-bit PIL image: uint8
    0-255 as is, bool as 0/255, uint16 (16-bit) divided by 257, other numbers by their range
    (0-1 times 255, 0-255 as is, up to 65535 as 16-bit). NaN or infinite values are refused."""
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise DataError(f"{name}: array of shape {arr.shape} is not an (H, W) or (H, W, 3) image")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        if arr.dtype.kind not in "uif":
            raise DataError(f"{name}: array of {arr.dtype} values is not an image")
        arr = _scale_to_uint8(arr, name, sixteen_bit=arr.dtype == np.uint16)
    return Image.fromarray(np.ascontiguousarray(arr))


def _scale_to_uint8(arr: np.ndarray, name: str, *, sixteen_bit: bool = False) -> np.ndarray:
    """Numbers to uint8 grey levels: 16-bit values (``sixteen_bit``, or anything in
    0-65535 above 255) divided by 257 and rounded, so ``v * 257`` gives back ``v``; 0-1
    times 255; 0-255 as is; any other range stretched linearly to 0-255. Integer images
    stay integer (4 bytes a pixel at most: a 16-bit bomb costs no float64 copies)."""
    if arr.size == 0:
        return np.zeros(arr.shape, np.uint8)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise UnusableImageError(f"{name}: the image has NaN or infinite pixel values", "non_finite")
    lo, hi = arr.min(), arr.max()
    if sixteen_bit or (lo >= 0 and 255 < hi <= 65535):
        if arr.dtype.kind in "ui":
            return ((arr.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)  # round(v / 257)
        x = arr.astype(np.float32) / np.float32(257.0)
    elif lo >= 0 and hi <= 1:
        x = arr.astype(np.float32) * np.float32(255.0)
    elif lo >= 0 and hi <= 255:
        if arr.dtype.kind in "ui":
            return arr.astype(np.uint8)
        x = arr.astype(np.float32)
    else:
        span = float(hi) - float(lo)
        if span == 0.0:
            return np.zeros(arr.shape, np.uint8)
        x = ((arr.astype(np.float64) - float(lo)) * (255.0 / span)).astype(np.float32)
    return np.clip(np.rint(x, out=x), 0, 255, out=x).astype(np.uint8)


#: PIL modes decoded as 16-bit grey.
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
#: PIL modes with an alpha channel (composited over white paper).
_ALPHA = ("LA", "La", "PA", "RGBA", "RGBa")


def to_8bit(img: Image.Image, name: str) -> Image.Image:
    """Any PIL image as an 8-bit ``"L"`` or ``"RGB"`` image at its own size, with its grey
    levels scaled to 0-255 from the range its mode stores.

    * 16-bit grey (``I;16``, ``I;16B``, ...), and ``I`` within 0-65535: divided by 257 (so a
      16-bit image gives its 8-bit version); ``F`` (float TIFF): 0-1, 0-255 or 0-65535, else
      stretched; other ``I`` ranges stretched; NaN or infinity refused;
    * transparency (``LA``, ``RGBA``, ``PA``, palettes with a transparent entry) composited over
      white, so transparent paper is paper whatever colour its hidden pixels have;
    * palettes, ``CMYK`` (JPEG's too), ``YCbCr``, ``HSV``, ``RGBX``: to RGB; ``LAB``: its lightness;
    * ``1`` (bilevel): 0 and 255.
    """
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        arr = np.asarray(img)
        return Image.fromarray(_scale_to_uint8(arr, name, sixteen_bit=mode in _SIXTEEN_BIT), "L")
    if mode == "P" and ("transparency" in img.info or (img.palette is not None and img.palette.mode == "RGBA")):
        mode = "PA"
    if mode in _ALPHA:
        rgba = img.convert("RGBA") if img.mode != "La" else img.convert("LA").convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out = Image.alpha_composite(paper, rgba).convert("RGB")
        return out.convert("L") if img.mode in ("LA", "La") else out
    if mode == "LAB":
        return img.getchannel(0)
    if mode == "P":
        return img.convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError:
        raise DataError(f"{name}: unsupported image mode {mode!r}") from None


def check_content(img: Image.Image, name: str) -> None:
    """Refuse an 8-bit ``"L"``/``"RGB"`` image with no content: fewer than
    :data:`MIN_CONTENT_FRACTION` of its pixels at least :data:`CONTENT_CONTRAST` grey levels
    away from its median (per channel). Blank, one-colour and near-constant images are what
    a badly decoded or empty picture looks like; the model would embed them all alike."""
    w, h = img.size
    factor = int(np.ceil(np.sqrt(w * h / _CONTENT_PIXELS))) if w * h > _CONTENT_PIXELS else 1
    small = img.reduce(factor) if factor > 1 else img
    arr = np.asarray(small, dtype=np.uint8)
    arr = arr.reshape(-1, 1) if arr.ndim == 2 else arr.reshape(-1, arr.shape[-1])
    n = arr.shape[0]
    far = np.zeros(n, bool)
    for c in range(arr.shape[1]):
        counts = np.bincount(arr[:, c], minlength=256)
        median = int(np.searchsorted(np.cumsum(counts), (n + 1) // 2))
        far |= np.abs(arr[:, c].astype(np.int16) - median) >= CONTENT_CONTRAST
    if far.sum() < max(1.0, MIN_CONTENT_FRACTION * n):
        what = "all one value" if int(arr.max()) == int(arr.min()) else "near-constant"
        raise UnusableImageError(
            f"{name}: the image has no content ({w}x{h} pixels, {what}: fewer than {MIN_CONTENT_FRACTION:.1%} "
            f"of its pixels differ from the background by {CONTENT_CONTRAST}/255 grey levels or more)",
            "no_content",
        )


def check_shape(size: tuple[int, int], name: str) -> None:
    """Refuse an empty image or one whose ``(width, height)`` is more elongated than
    :data:`MAX_ASPECT_RATIO`."""
    w, h = size
    if w < 1 or h < 1:
        raise UnusableImageError(f"{name}: the image is empty ({w}x{h} pixels)", "no_content")
    if max(w, h) > MAX_ASPECT_RATIO * min(w, h):
        raise UnusableImageError(
            f"{name}: image of {w}x{h} pixels has an aspect ratio of {max(w, h) / min(w, h):.0f}:1, "
            f"over the limit of {MAX_ASPECT_RATIO:.0f}:1",
            "aspect_ratio",
        )


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
        DataError: naming the file when it is missing, unreadable, truncated or too large,
            more elongated than :data:`MAX_ASPECT_RATIO`, or without content (blank, one
            colour, near-constant: see :func:`check_content`).
    """
    name = describe_source(source) if name is None else name
    if isinstance(source, np.ndarray):
        if source.size > max_pixels * 3:
            raise DataError(f"{name}: array of {source.size} values exceeds the pixel limit")
        img = array_to_pil(source, name)
    else:
        img = open_pil(source, max_pixels)
    opened = img if img is not source else None  # closed here; a caller's PIL image is not
    try:
        check_shape(img.size, name)
        mode = "RGB" if preprocessing.channels == 3 else "L"
        img = to_8bit(img, name)
        if img.mode != mode:
            img = img.convert(mode)
        check_content(img, name)
        h, w = preprocessing.size
        if preprocessing.keep_aspect:
            img = pad_to_aspect(img, h / w, 255 if preprocessing.invert else 0)
        if preprocessing.align:
            from twinshot.faces.align import align_face  # torch; only for face models

            img = align_face(img, preprocessing.align, (h, w), name=name).convert(mode)
        elif preprocessing.crop < 1.0:
            cw, ch = (max(1, round(v * preprocessing.crop)) for v in img.size)
            left, top = (img.size[0] - cw) // 2, (img.size[1] - ch) // 2
            img = img.crop((left, top, left + cw, top + ch))
        if img.size != (w, h):
            img = img.resize((w, h), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    except DataError:
        raise
    except Exception as exc:  # PIL's decoders raise many kinds on damaged files
        detail = " ".join(str(exc).split())[:200] or exc.__class__.__name__
        raise DataError(f"{name}: truncated or corrupt image ({detail})") from None
    finally:
        if opened is not None:
            opened.close()
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    out = np.array(arr, dtype=np.uint8, copy=True, order="C")
    if preprocessing.invert:
        np.subtract(255, out, out=out)
    return out
