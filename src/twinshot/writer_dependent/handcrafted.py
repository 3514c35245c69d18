"""A classic handcrafted signature descriptor, the reference row that shows what the CNN
buys: histograms of oriented gradients (HOG, Dalal & Triggs 2005) on a grid of cells of
the model-sized signature image, plus the ink density of each cell.

``(N, 1, H, W)`` float images in ``[0, 1]`` with ink as foreground (a model's
preprocessing with ``invert = true``) -> ``(N, rows * cols * (bins + 1))`` features.
Each cell's orientation histogram (unsigned, ``bins`` bins over 0-180 degrees, weighted
by the gradient magnitude) is L2-normalised; the density is the cell's mean ink.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from twinshot.errors import ConfigError


def hog_features(images: torch.Tensor | np.ndarray, grid: Sequence[int] = (6, 9), bins: int = 9) -> np.ndarray:
    """HOG + ink density of ``images`` ``(N, 1, H, W)`` (or ``(N, H, W)``); see the module.

    Returns:
        float32 ``(N, rows * cols * (bins + 1))``.
    """
    x = _gray(images, "hog_features")
    rows, cols = int(grid[0]), int(grid[1])
    n, h, w = x.shape
    if rows < 1 or cols < 1 or rows > h or cols > w or bins < 1:
        raise ConfigError(f"hog grid {rows}x{cols} with {bins} bins does not fit {h}x{w} images")
    gy, gx = np.gradient(x, axis=(1, 2))
    mag = np.hypot(gx, gy)
    ang = np.mod(np.arctan2(gy, gx), np.pi)  # unsigned orientation in [0, pi)
    b = np.minimum((ang / np.pi * bins).astype(np.int64), bins - 1)
    ys = np.linspace(0, h, rows + 1).astype(int)
    xs = np.linspace(0, w, cols + 1).astype(int)
    out = np.zeros((n, rows, cols, bins + 1), dtype=np.float32)
    for i in range(rows):
        for j in range(cols):
            sl = (slice(None), slice(ys[i], ys[i + 1]), slice(xs[j], xs[j + 1]))
            cm, cb = mag[sl].reshape(n, -1), b[sl].reshape(n, -1)
            hist = np.zeros((n, bins), dtype=np.float32)
            np.add.at(hist, (np.repeat(np.arange(n), cb.shape[1]), cb.ravel()), cm.ravel())
            hist /= np.linalg.norm(hist, axis=1, keepdims=True) + 1e-6
            out[:, i, j, :bins] = hist
            out[:, i, j, bins] = x[sl].reshape(n, -1).mean(1)
    return out.reshape(n, -1)


def _gray(images: torch.Tensor | np.ndarray, who: str = "handcrafted features") -> np.ndarray:
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    x = x.astype(np.float32)
    if x.ndim == 4:
        x = x.mean(1)
    if x.ndim != 3:
        raise ConfigError(f"{who} expects (N, 1, H, W) or (N, H, W) images, got shape {tuple(x.shape)}")
    return x


def lbp_features(images: torch.Tensor | np.ndarray, grid: Sequence[int] = (3, 4)) -> np.ndarray:
    """Rotation-invariant uniform local binary patterns (8 neighbours, radius 1; Ojala et al.
    2002) around the strokes: per cell, a 10-bin histogram (codes 0-8 of the uniform patterns
    and 9 for the rest), counted only where a pixel is ink (> 0.3) or has a darker
    neighbour (blank paper is all code 8), normalised to sum 1.

    ``(N, 1, H, W)`` (or ``(N, H, W)``) float in [0, 1], ink foreground ->
    float32 ``(N, rows * cols * 10)``.
    """
    x = _gray(images)
    n, h, w = x.shape
    rows, cols = int(grid[0]), int(grid[1])
    if rows < 1 or cols < 1 or rows > h - 2 or cols > w - 2:
        raise ConfigError(f"lbp grid {rows}x{cols} does not fit {h}x{w} images")
    c = x[:, 1:-1, 1:-1]
    offs = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]
    bits = np.stack([(x[:, 1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx] >= c) for dy, dx in offs], -1).astype(np.int32)
    trans = np.abs(np.diff(np.concatenate([bits, bits[..., :1]], -1), axis=-1)).sum(-1)
    code = np.where(trans <= 2, bits.sum(-1), 9)
    near = (c > 0.3) | (bits.sum(-1) < 8)
    hh, ww = c.shape[1:]
    ys = np.linspace(0, hh, rows + 1).astype(int)
    xs = np.linspace(0, ww, cols + 1).astype(int)
    out = np.zeros((n, rows, cols, 10), np.float32)
    for i in range(rows):
        for j in range(cols):
            cc = code[:, ys[i] : ys[i + 1], xs[j] : xs[j + 1]].reshape(n, -1)
            m = near[:, ys[i] : ys[i + 1], xs[j] : xs[j + 1]].reshape(n, -1)
            for b in range(10):
                out[:, i, j, b] = ((cc == b) & m).sum(1)
            out[:, i, j] /= out[:, i, j].sum(1, keepdims=True) + 1e-6
    return out.reshape(n, -1)


def ink_density(images: torch.Tensor | np.ndarray, grid: Sequence[int] = (10, 15)) -> np.ndarray:
    """Mean ink per cell of a ``grid`` (``adaptive_avg_pool2d``): float32 ``(N, rows * cols)``."""
    t = torch.from_numpy(_gray(images))[:, None]
    return torch.nn.functional.adaptive_avg_pool2d(t, tuple(int(g) for g in grid)).flatten(1).numpy()


#: :func:`signature_descriptor`'s parts: HOG grids, LBP grids, the density grid.
DESCRIPTOR_HOG_GRIDS: tuple[tuple[int, int], ...] = ((3, 5), (6, 9), (12, 18))
DESCRIPTOR_LBP_GRIDS: tuple[tuple[int, int], ...] = ((1, 1), (3, 4))
DESCRIPTOR_DENSITY_GRID: tuple[int, int] = (10, 15)


def signature_descriptor(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """The dichotomy transform's descriptor (docs/applications.md, runs 17 and 19): HOG at
    3x5, 6x9 and 12x18 cells (:func:`hog_features`), uniform LBP histograms over the whole
    image and 3x4 cells (:func:`lbp_features`), ink density on a 10x15 grid.

    ``(N, 1, H, W)`` float in [0, 1], ink foreground -> float32 ``(N, F)``; F = 3,130 on
    images of at least 12x18 pixels.
    """
    x = _gray(images)
    parts = [hog_features(x, g) for g in DESCRIPTOR_HOG_GRIDS]
    parts += [lbp_features(x, g) for g in DESCRIPTOR_LBP_GRIDS]
    parts.append(ink_density(x, DESCRIPTOR_DENSITY_GRID))
    return np.concatenate(parts, 1).astype(np.float32)


def descriptor_size() -> int:
    """The length F of :func:`signature_descriptor`'s rows."""
    hog = sum(r * c * 10 for r, c in DESCRIPTOR_HOG_GRIDS)
    lbp = sum(r * c * 10 for r, c in DESCRIPTOR_LBP_GRIDS)
    return hog + lbp + DESCRIPTOR_DENSITY_GRID[0] * DESCRIPTOR_DENSITY_GRID[1]
