"""TensorFlow.js operations as face-api uses them, in PyTorch (NCHW float32).

tfjs's ``resizeBilinear`` (``alignCorners=false, halfPixelCenters=false``) samples source
pixel ``dst * in / out`` (not the half-pixel centres of ``torch.nn.functional.interpolate``),
"same" padding puts the odd pixel after (bottom/right), and face-api pads images to a square
with zeros before resizing.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=64)
def _taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """tfjs's legacy bilinear sampling along one axis: for each output index, the two source
    indices ``i0, i1`` and their weights ``(1 - frac, frac)`` (float32, computed in float64)."""
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    frac = (src - i0.double()).clamp(0, 1)
    return i0, i1, (1 - frac).float(), frac.float()


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """tfjs ``resizeBilinear(x, size, false, false)``: ``(B, C, H, W)`` -> ``(B, C, *size)``,
    rows then columns, each output a weighted sum of its two source pixels (gathered: a
    dense interpolation matrix would cost ``H x size`` multiply-adds per column)."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    r0, r1, a, b = _taps(h, size[0])
    x = x.index_select(-2, r0) * a[:, None] + x.index_select(-2, r1) * b[:, None]
    c0, c1, a, b = _taps(w, size[1])
    return x.index_select(-1, c0) * a + x.index_select(-1, c1) * b


def pad_same(x: torch.Tensor, k: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """TensorFlow "same" padding for a ``k x k`` window at ``stride`` (extra pixel after)."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):
        out = math.ceil(n / stride)
        total = max((out - 1) * stride + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


def max_pool_same(x: torch.Tensor, k: int, stride: int) -> torch.Tensor:
    """tfjs ``maxPool(x, k, stride, 'same')``. The 2x2 windows face-api uses are taken
    as elementwise maxima of strided views (several times faster than ``max_pool2d`` on CPU)."""
    x = pad_same(x, k, stride, float("-inf"))
    if k == 2 and stride in (1, 2):
        h, w = x.shape[-2:]
        if stride == 2:
            x = x[..., : h - h % 2, : w - w % 2]
            return torch.maximum(
                torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]),
            )
        return torch.maximum(torch.maximum(x[..., :-1, :-1], x[..., :-1, 1:]), torch.maximum(x[..., 1:, :-1], x[..., 1:, 1:]))
    return F.max_pool2d(x, k, stride)


def pad_to_square(x: torch.Tensor, centre: bool) -> torch.Tensor:
    """face-api's ``padToSquare``: zeros after the short side (``centre=False``), or
    ``round(diff / 2)`` after and the rest before it (``centre=True``). ``(B, C, H, W)``."""
    h, w = x.shape[-2:]
    if h == w:
        return x
    diff = abs(h - w)
    after = math.floor(diff * (0.5 if centre else 1.0) + 0.5)  # JavaScript's Math.round
    before = diff - after if centre else 0
    return F.pad(x, (0, 0, before, after) if h < w else (before, after, 0, 0))


def separable_conv(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor, bias: torch.Tensor, stride: int) -> torch.Tensor:
    """tfjs ``separableConv2d(x, dw, pw, stride, 'same') + bias`` with torch-layout filters
    (``dw (C, 1, 3, 3)``, ``pw (O, C, 1, 1)``)."""
    x = F.conv2d(pad_same(x, depthwise.shape[-1], stride), depthwise, stride=stride, groups=x.shape[1])
    return F.conv2d(x, pointwise, bias)
