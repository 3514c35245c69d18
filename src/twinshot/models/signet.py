"""A signature encoder in the spirit of SigNet (Dey et al. 2017; Hafemann et al. 2017),
sized for a CPU: ``(B, 1, H, W)`` float -> ``(B, embedding_dim)``.

SigNet reads a whole signature, resized with its aspect ratio kept (about 150x220), with
a wide strided first convolution, a few 3x3 blocks and fully connected layers on the
*spatial* feature map (where a stroke lies matters, so the features are not averaged
away). This version keeps that shape at a fraction of the cost:

* conv 5x5 stride 2 -> BN -> ReLU -> max-pool 2       (``widths[0]`` channels)
* for each further width: conv 3x3 -> BN -> ReLU, then max-pool 2 after every block
  except the last two (SigNet's stack of unpooled 3x3 convolutions)
* adaptive average pooling to ``grid`` (rows, columns), flatten, dropout,
  fully connected ``hidden`` -> ReLU -> fully connected ``embedding_dim``
* optionally L2-normalised.

``test_views`` (off by default) makes the encoder, in eval mode only, embed a few views of
each image and return their mean (re-normalised): test-time augmentation built into the
model, so galleries, the CLI, the service and exports all use it. See :func:`parse_views`.

With the defaults on 1x120x176 input: about 1.1 M parameters and 0.2 GMAC per image.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from twinshot.errors import ConfigError
from twinshot.models.encoders import ENCODERS, Encoder


#: The kinds of test-time views and how many views each adds (see :func:`parse_views`).
VIEW_KINDS: dict[str, int] = {"shift": 4, "stroke": 2, "scale": 2}


def parse_views(views: Sequence[str]) -> list[tuple[str, float]]:
    """Check ``test_views`` entries ``"KIND:VALUE"`` and return ``(kind, value)`` pairs.

    * ``"shift:N"``: four views, the image moved ``N`` pixels (integer >= 1) left, right, up
      and down (the edge row/column repeated into the gap);
    * ``"stroke:T"``: two views, the image blended with its 3x3 grey dilation and with its
      3x3 erosion, weight ``T`` in (0, 1] (``(1 - T) x + T dilate(x)``: thicker and thinner
      strokes, as the ``signature_strokes`` augmentation draws them);
    * ``"scale:F"``: two views, the image scaled by ``1 - F`` and ``1 + F`` about its centre
      (bilinear; ``F`` in (0, 0.5)).

    The image itself is always the first view.
    """
    if isinstance(views, str):
        raise ConfigError(f"test_views must be a list of 'kind:value' strings, got the string {views!r}")
    out: list[tuple[str, float]] = []
    for v in views:
        kind, sep, value = str(v).partition(":")
        if kind not in VIEW_KINDS or not sep:
            raise ConfigError(f"test_views entry {v!r}: expected 'kind:value' with kind one of {', '.join(VIEW_KINDS)}")
        try:
            x = float(value)
        except ValueError:
            raise ConfigError(f"test_views entry {v!r}: {value!r} is not a number") from None
        if kind == "shift" and (x != int(x) or x < 1):
            raise ConfigError(f"test_views entry {v!r}: the shift must be a whole number of pixels >= 1")
        if kind == "stroke" and not 0 < x <= 1:
            raise ConfigError(f"test_views entry {v!r}: the stroke weight must be in (0, 1]")
        if kind == "scale" and not 0 < x < 0.5:
            raise ConfigError(f"test_views entry {v!r}: the scale change must be in (0, 0.5)")
        out.append((kind, x))
    return out


def _scale_matrix(n: int, factor: float) -> torch.Tensor:
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


def _pool_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """``(n_out, n_in)``: row ``i`` averages the cells ``floor(i n_in / n_out)`` up to
    ``ceil((i + 1) n_in / n_out)``, exactly as ``adaptive_avg_pool`` does."""
    m = torch.zeros(n_out, n_in)
    for i in range(n_out):
        a, b = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        m[i, a:b] = 1.0 / (b - a)
    return m


@ENCODERS.register("signet")
class SigNetEncoder(Encoder):
    """SigNet-like convolutional encoder for whole signatures (aspect ratio kept).

    Args:
        in_channels: 1 (grey, ink as foreground).
        input_size: input height (the model's preprocessing resizes to it).
        input_width: input width (default: ``input_size``).
        widths: output channels of the first (5x5, stride 2) convolution and the 3x3 blocks.
        grid: ``(rows, columns)`` of the pooled feature map fed to the fully connected layers.
        hidden: width of the hidden fully connected layer (0: none).
        embedding_dim: output size ``D``.
        normalize: L2-normalise the embeddings.
        dropout: dropout before each fully connected layer.
        test_views: test-time views, e.g. ``["shift:3", "stroke:0.5"]`` (:func:`parse_views`);
            in eval mode the embedding is the mean of the image's and these views'
            embeddings (re-normalised when ``normalize``); training is unchanged.
    """

    def __init__(
        self,
        in_channels: int = 1,
        input_size: int = 120,
        input_width: int | None = None,
        widths: Sequence[int] = (32, 64, 96, 96, 128),
        grid: Sequence[int] = (3, 5),
        hidden: int = 256,
        embedding_dim: int = 128,
        normalize: bool = False,
        dropout: float = 0.0,
        test_views: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self._views = parse_views(test_views)
        self.test_views = [str(v) for v in test_views]
        widths = [int(w) for w in widths]
        if len(widths) < 2:
            raise ConfigError("signet widths must name at least two blocks")
        if len(grid) != 2 or min(int(g) for g in grid) < 1:
            raise ConfigError(f"signet grid must be (rows, columns) >= 1, got {list(grid)}")
        width = int(input_width or input_size)
        if min(int(input_size), width) < 16:
            raise ConfigError(f"signet input must be at least 16x16, got {input_size}x{width}")
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, widths[0], 5, stride=2, padding=2, bias=False),
            nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        ]
        prev = widths[0]
        for i, w in enumerate(widths[1:], start=1):
            layers += [nn.Conv2d(prev, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i < len(widths) - 2:
                layers.append(nn.MaxPool2d(2))
            prev = w
        self.features = nn.Sequential(*layers)
        self.grid = (int(grid[0]), int(grid[1]))
        self.pool = nn.AdaptiveAvgPool2d(self.grid)
        # The same pooling as two fixed matrices at the input size (ONNX cannot export
        # adaptive pooling whose sizes do not divide); other sizes use self.pool.
        with torch.no_grad():
            fh, fw = self.features.eval()(torch.zeros(1, in_channels, int(input_size), width)).shape[-2:]
        self.features.train()
        self.register_buffer("pool_rows", _pool_matrix(int(fh), self.grid[0]), persistent=False)
        self.register_buffer("pool_cols", _pool_matrix(int(fw), self.grid[1]).t().contiguous(), persistent=False)
        flat = prev * self.grid[0] * self.grid[1]
        fc: list[nn.Module] = []
        if dropout > 0:
            fc.append(nn.Dropout(dropout))
        if hidden:
            fc += [nn.Linear(flat, hidden), nn.ReLU(inplace=True)]
            if dropout > 0:
                fc.append(nn.Dropout(dropout))
            flat = hidden
        fc.append(nn.Linear(flat, embedding_dim))
        self.fc = nn.Sequential(*fc)
        self.embedding_dim = int(embedding_dim)
        self.input_shape = (in_channels, int(input_size), width)
        self.normalized = bool(normalize)
        for k, (kind, f) in enumerate(self._views):
            if kind == "scale":  # fixed matrices at the input size (exports keep them)
                for j, factor in enumerate((1 - f, 1 + f)):
                    self.register_buffer(f"view{k}_{j}_rows", _scale_matrix(int(input_size), factor), persistent=False)
                    self.register_buffer(f"view{k}_{j}_cols", _scale_matrix(width, factor).t().contiguous(), persistent=False)

    def views(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The image and its ``test_views``, each ``(B, C, H, W)``."""
        out = [x]
        h, w = x.shape[2], x.shape[3]
        for k, (kind, f) in enumerate(self._views):
            if kind == "shift":
                n = int(f)
                p = F.pad(x, (n, n, n, n), mode="replicate")
                out += [p[:, :, n:n + h, 0:w], p[:, :, n:n + h, 2 * n:2 * n + w], p[:, :, 0:h, n:n + w], p[:, :, 2 * n:2 * n + h, n:n + w]]
            elif kind == "stroke":
                dilated = F.max_pool2d(x, 3, stride=1, padding=1)
                eroded = -F.max_pool2d(-x, 3, stride=1, padding=1)
                out += [x + f * (dilated - x), x + f * (eroded - x)]
            else:
                for j in range(2):
                    rows, cols = getattr(self, f"view{k}_{j}_rows"), getattr(self, f"view{k}_{j}_cols")
                    if rows.shape[0] != h or cols.shape[0] != w:
                        raise ConfigError(f"test_views {kind}: the encoder was built for {rows.shape[0]}x{cols.shape[0]} inputs, got {h}x{w}")
                    out.append(torch.matmul(torch.matmul(rows, x), cols))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, embedding_dim)``; with ``test_views`` in eval mode, the
        mean over the views (one batch of ``V * B`` through the network)."""
        if not self.test_views or self.training:
            return self._embed(x)
        views = self.views(x)
        b = x.shape[0]
        e = self._embed(torch.cat(views, 0)).reshape(len(views), b, -1).mean(0)
        return F.normalize(e, dim=1) if self.normalized else e

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        if tuple(h.shape[-2:]) == (self.pool_rows.shape[1], self.pool_cols.shape[0]):
            h = torch.matmul(torch.matmul(self.pool_rows, h), self.pool_cols)  # (B, C, rows, cols)
        else:
            h = self.pool(h)
        h = self.fc(torch.flatten(h, 1))
        return F.normalize(h, dim=1) if self.normalized else h
