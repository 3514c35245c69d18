"""Test-time views: a few transformed copies of each image whose embeddings an encoder
averages in eval mode (test-time augmentation built into the model, so galleries, the CLI,
the service and exports all get it).

An encoder takes ``test_views``, a list of ``"KIND:VALUE"`` strings (:func:`parse_views`),
builds a :class:`ViewMaker` for its input size and, in eval mode, embeds
``torch.cat(maker(x))`` in one batch and averages with :func:`mean_of_views`. Used by the
``compact`` (:mod:`twinshot.models.encoders`) and ``signet`` (:mod:`twinshot.models.signet`)
encoders; ``compact``'s older ``test_shifts = true`` is ``["shift:1"]``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from twinshot.errors import ConfigError

#: The kinds of test-time views and how many views each adds (see :func:`parse_views`).
VIEW_KINDS: dict[str, int] = {"shift": 4, "stroke": 2, "scale": 2, "rot": 2}


def parse_views(views: Sequence[str], field: str = "test_views") -> list[tuple[str, float]]:
    """Check ``test_views`` entries ``"KIND:VALUE"`` and return ``(kind, value)`` pairs.

    * ``"shift:N"``: four views, the image moved ``N`` pixels (integer >= 1) right, left,
      down and up (the edge row/column repeated into the gap);
    * ``"stroke:T"``: two views, the image blended with its 3x3 grey dilation and with its
      3x3 erosion, weight ``T`` in (0, 1] (``(1 - T) x + T dilate(x)``: thicker and thinner
      strokes, as the ``signature_strokes`` augmentation draws them);
    * ``"scale:F"``: two views, the image scaled by ``1 - F`` and ``1 + F`` about its centre
      (bilinear, zeros outside; ``F`` in (0, 0.5));
    * ``"rot:D"``: two views, the image rotated by ``+D`` and ``-D`` degrees about its centre
      (bilinear, zeros outside; ``D`` in (0, 45]; exports to ONNX need opset >= 16).

    The image itself is always the first view; ``field`` names the setting in errors.
    """
    if isinstance(views, str):
        raise ConfigError(f"{field} must be a list of 'kind:value' strings, got the string {views!r}")
    out: list[tuple[str, float]] = []
    for v in views:
        kind, sep, value = str(v).partition(":")
        if kind not in VIEW_KINDS or not sep:
            raise ConfigError(f"{field} entry {v!r}: expected 'kind:value' with kind one of {', '.join(VIEW_KINDS)}")
        try:
            x = float(value)
        except ValueError:
            raise ConfigError(f"{field} entry {v!r}: {value!r} is not a number") from None
        if kind == "shift" and (x != int(x) or x < 1):
            raise ConfigError(f"{field} entry {v!r}: the shift must be a whole number of pixels >= 1")
        if kind == "stroke" and not 0 < x <= 1:
            raise ConfigError(f"{field} entry {v!r}: the stroke weight must be in (0, 1]")
        if kind == "scale" and not 0 < x < 0.5:
            raise ConfigError(f"{field} entry {v!r}: the scale change must be in (0, 0.5)")
        if kind == "rot" and not 0 < x <= 45:
            raise ConfigError(f"{field} entry {v!r}: the rotation must be in (0, 45] degrees")
        out.append((kind, x))
    return out


def count_views(views: Sequence[str]) -> int:
    """How many images one image becomes (itself included): the embedding cost factor."""
    return 1 + sum(VIEW_KINDS[kind] for kind, _ in parse_views(views))


def scale_matrix(n: int, factor: float) -> torch.Tensor:
    """``(n, n)``: bilinear resampling of ``n`` pixels scaled by ``factor`` about the centre
    (align_corners=False, zeros outside), ``y = M @ x``."""
    m = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        src = (i + 0.5 - n / 2) / factor + n / 2 - 0.5
        j0 = math.floor(src)
        frac = src - j0
        for j, w in ((j0, 1.0 - frac), (j0 + 1, frac)):
            if 0 <= j < n and w > 0:
                m[i, j] += w
    return m.float()


def rotation_grid(height: int, width: int, degrees: float) -> torch.Tensor:
    """``(1, H, W, 2)``: the :func:`torch.nn.functional.grid_sample` grid that rotates an
    image by ``degrees`` (counter-clockwise as displayed) about its centre, in pixel units
    (non-square images are not sheared)."""
    a = math.radians(degrees)
    ys = torch.arange(height, dtype=torch.float64) + 0.5 - height / 2
    xs = torch.arange(width, dtype=torch.float64) + 0.5 - width / 2
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    # output pixel (x, y) reads the input at the inverse rotation (y grows downwards)
    src_x = math.cos(a) * xx - math.sin(a) * yy
    src_y = math.sin(a) * xx + math.cos(a) * yy
    grid = torch.stack([src_x / (width / 2), src_y / (height / 2)], dim=-1)
    return grid.unsqueeze(0).float()


def shift_views(x: torch.Tensor, n: int = 1) -> list[torch.Tensor]:
    """``(B, C, H, W)`` -> its four ``n``-pixel shifts right, left, down, up (the edge
    row/column repeated into the gap), each ``(B, C, H, W)``, in the order of
    :func:`twinshot.evaluation.tta.shift_views`."""
    h, w = x.shape[2], x.shape[3]
    p = F.pad(x, (n, n, n, n), mode="replicate")
    return [p[:, :, n:n + h, 0:w], p[:, :, n:n + h, 2 * n:2 * n + w], p[:, :, 0:h, n:n + w], p[:, :, 2 * n:2 * n + h, n:n + w]]


class ViewMaker(nn.Module):
    """The image and its ``test_views`` (:func:`parse_views`) for inputs of ``height`` x
    ``width``: ``forward((B, C, H, W)) -> [x, view, ...]``, ``len == count_views(views)``.

    Scale and rotation views resample with fixed buffers built for that size (so exports
    keep them; not saved in checkpoints); other sizes raise :class:`ConfigError`.
    """

    def __init__(self, views: Sequence[str], height: int, width: int, field: str = "test_views") -> None:
        super().__init__()
        self.parsed = parse_views(views, field)
        self.field = field
        self.size = (int(height), int(width))
        for k, (kind, f) in enumerate(self.parsed):
            if kind == "scale":
                for j, factor in enumerate((1 - f, 1 + f)):
                    self.register_buffer(f"view{k}_{j}_rows", scale_matrix(self.size[0], factor), persistent=False)
                    self.register_buffer(f"view{k}_{j}_cols", scale_matrix(self.size[1], factor).t().contiguous(), persistent=False)
            elif kind == "rot":
                for j, deg in enumerate((f, -f)):
                    self.register_buffer(f"view{k}_{j}_grid", rotation_grid(*self.size, deg), persistent=False)

    def __len__(self) -> int:
        return 1 + sum(VIEW_KINDS[kind] for kind, _ in self.parsed)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, C, H, W)`` -> the image and its views, each ``(B, C, H, W)``."""
        out = [x]
        h, w = x.shape[2], x.shape[3]
        for k, (kind, f) in enumerate(self.parsed):
            if kind == "shift":
                out += shift_views(x, int(f))
            elif kind == "stroke":
                dilated = F.max_pool2d(x, 3, stride=1, padding=1)
                eroded = -F.max_pool2d(-x, 3, stride=1, padding=1)
                out += [x + f * (dilated - x), x + f * (eroded - x)]
            else:
                if (h, w) != self.size:
                    raise ConfigError(f"{self.field} {kind}: the encoder was built for {self.size[0]}x{self.size[1]} inputs, got {h}x{w}")
                for j in range(2):
                    if kind == "scale":
                        rows, cols = getattr(self, f"view{k}_{j}_rows"), getattr(self, f"view{k}_{j}_cols")
                        out.append(torch.matmul(torch.matmul(rows, x), cols))
                    else:
                        grid = getattr(self, f"view{k}_{j}_grid").expand(x.shape[0], -1, -1, -1)
                        out.append(F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
        return out


def mean_of_views(embeddings: torch.Tensor, n_views: int, normalize: bool) -> torch.Tensor:
    """``(V * B, D)`` embeddings of ``V`` views stacked view by view -> ``(B, D)``: their
    mean, L2-normalised again when ``normalize``."""
    e = embeddings.reshape(n_views, embeddings.shape[0] // n_views, -1).mean(0)
    return F.normalize(e, dim=1) if normalize else e
