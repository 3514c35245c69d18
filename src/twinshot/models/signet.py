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
model, so galleries, the CLI, the service and exports all use it. See
:func:`twinshot.models.views.parse_views`.

With the defaults on 1x120x176 input: about 1.1 M parameters and 0.2 GMAC per image.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from twinshot.errors import ConfigError
from twinshot.models.encoders import ENCODERS, Encoder
from twinshot.models.views import VIEW_KINDS, ViewMaker, mean_of_views, parse_views  # noqa: F401 (parse_views, VIEW_KINDS: re-exported)


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
        parse_views(test_views)  # bad entries fail before anything is built
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
        self.view_maker = ViewMaker(test_views, int(input_size), width)

    def views(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The image and its ``test_views``, each ``(B, C, H, W)`` (:class:`ViewMaker`)."""
        return self.view_maker(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, embedding_dim)``; with ``test_views`` in eval mode, the
        mean over the views (one batch of ``V * B`` through the network)."""
        if not self.test_views or self.training:
            return self._embed(x)
        views = self.view_maker(x)
        return mean_of_views(self._embed(torch.cat(views, 0)), len(views), self.normalized)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        if tuple(h.shape[-2:]) == (self.pool_rows.shape[1], self.pool_cols.shape[0]):
            h = torch.matmul(torch.matmul(self.pool_rows, h), self.pool_cols)  # (B, C, rows, cols)
        else:
            h = self.pool(h)
        h = self.fc(torch.flatten(h, 1))
        return F.normalize(h, dim=1) if self.normalized else h
