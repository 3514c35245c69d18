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
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    x = x.astype(np.float32)
    if x.ndim == 4:
        x = x.mean(1)
    if x.ndim != 3:
        raise ConfigError(f"hog_features expects (N, 1, H, W) or (N, H, W) images, got shape {tuple(x.shape)}")
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
