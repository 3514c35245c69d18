"""Encoders: one branch of the Siamese network, ``(B, C, H, W) float -> (B, D)``.

Every encoder is an ``nn.Module`` with ``embedding_dim`` (D) and ``input_shape``
(C, H, W), and is registered by name in :data:`ENCODERS` so configs and the CLI can
build it: ``ENCODERS.build("compact", embedding_dim=64)``.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from twinshot.errors import ConfigError
from twinshot.models.views import ViewMaker, mean_of_views, parse_views, shift_views
from twinshot.registry import Registry


class Encoder(nn.Module):
    """Base class: maps ``(B, C, H, W)`` float images to ``(B, embedding_dim)`` embeddings."""

    embedding_dim: int
    input_shape: tuple[int, int, int]
    #: True if embeddings are L2-normalised (unit length).
    normalized: bool = False


ENCODERS: Registry[Encoder] = Registry("encoder")


@ENCODERS.register("koch")
class KochEncoder(Encoder):
    """The convolutional branch of Koch, Zemel & Salakhutdinov (2015), exactly.

    Input 1x105x105. conv 64@10x10, ReLU, max-pool 2 -> 64x48x48;
    conv 128@7x7, ReLU, max-pool 2 -> 128x21x21; conv 128@4x4, ReLU, max-pool 2 -> 128x9x9;
    conv 256@4x4, ReLU -> 256x6x6; flatten (9216); fully connected 4096, sigmoid.
    38,947,648 parameters. Initialisation as in the paper: conv weights N(0, 1e-2),
    all biases N(0.5, 1e-2), fully connected weights N(0, 0.2) (standard deviations).
    """

    def __init__(self, in_channels: int = 1, input_size: int = 105, embedding_dim: int = 4096) -> None:
        super().__init__()
        if input_size != 105:
            raise ConfigError("the koch encoder takes 105x105 inputs (input_size=105)")
        self.input_shape = (in_channels, 105, 105)
        self.embedding_dim = embedding_dim
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 10), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 7), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(128, 128, 4), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(128, 256, 4), nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(256 * 6 * 6, embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 1e-2)
                nn.init.normal_(m.bias, 0.5, 1e-2)
        nn.init.normal_(self.fc.weight, 0.0, 0.2)
        nn.init.normal_(self.fc.bias, 0.5, 1e-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, 105, 105)`` -> ``(B, 4096)`` in (0, 1)."""
        return torch.sigmoid(self.fc(torch.flatten(self.features(x), 1)))


@ENCODERS.register("compact")
class CompactEncoder(Encoder):
    """A small convnet that trains fast on a CPU.

    ``len(widths)`` blocks of conv 3x3 (padding 1), batch norm, ReLU, max-pool 2, then
    either global average pooling (``pool="avg"``) or flattening (``pool="flatten"``),
    and, if ``embedding_dim`` is given, a linear projection to it. With the defaults on
    28x28 grey input this is the "Conv-4" backbone of the few-shot literature (64-d).

    Args:
        in_channels: 1 or 3.
        input_size: the square input side (the model's preprocessing resizes to it).
        widths: output channels of each block.
        embedding_dim: size of the final projection; ``None`` keeps the pooled features.
        pool: ``"flatten"`` or ``"avg"``.
        normalize: L2-normalise the embeddings.
        dropout: dropout before the projection.
        test_shifts: in eval mode, embed the image and its four 1-pixel shifts (edge
            replicated) and average the five embeddings (re-normalised when ``normalize``),
            as :func:`twinshot.evaluation.tta.embed_tta` with ``"shifts"`` does; training
            is unchanged. Built into the encoder so the gallery, exports and the service all
            get it; costs five forward passes per image. The same as ``test_views=["shift:1"]``.
        test_views: test-time views, e.g. ``["shift:1", "stroke:0.5", "scale:0.05"]``
            (:func:`twinshot.models.views.parse_views`); in eval mode the embedding is the mean
            of the image's and these views' embeddings (re-normalised when ``normalize``);
            training is unchanged. Give ``test_shifts`` or ``test_views``, not both.
    """

    def __init__(
        self,
        in_channels: int = 1,
        input_size: int = 28,
        widths: Sequence[int] = (64, 64, 64, 64),
        embedding_dim: int | None = None,
        pool: str = "flatten",
        normalize: bool = False,
        dropout: float = 0.0,
        test_shifts: bool = False,
        test_views: Sequence[str] = (),
    ) -> None:
        super().__init__()
        parse_views(test_views)  # bad entries fail before anything is built
        if test_shifts and test_views:
            raise ConfigError(f"give test_shifts or test_views, not both (test_shifts = true is test_views = [\"shift:1\"]), "
                              f"got test_views {list(test_views)}")
        if in_channels not in (1, 3):
            raise ConfigError(f"in_channels must be 1 or 3, got {in_channels}")
        if pool not in ("flatten", "avg"):
            raise ConfigError(f"pool must be 'flatten' or 'avg', got {pool!r}")
        widths = [int(w) for w in widths]
        if not widths:
            raise ConfigError("widths must name at least one block")
        side = input_size
        for _ in widths:
            side //= 2
        if side < 1:
            raise ConfigError(f"input_size {input_size} is too small for {len(widths)} pooling blocks")
        blocks: list[nn.Module] = []
        prev = in_channels
        for w in widths:
            blocks += [nn.Conv2d(prev, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            prev = w
        self.features = nn.Sequential(*blocks)
        self.pool = pool
        feat_dim = prev if pool == "avg" else prev * side * side
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.proj = nn.Linear(feat_dim, embedding_dim) if embedding_dim else nn.Identity()
        self.embedding_dim = int(embedding_dim or feat_dim)
        self.input_shape = (in_channels, input_size, input_size)
        self.normalized = normalize
        self.test_shifts = bool(test_shifts)
        self.test_views = [str(v) for v in test_views]
        self.view_maker = ViewMaker(self.test_views or ["shift:1"], input_size, input_size)

    def views(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The image and its test-time views (``test_views``, or the four 1-pixel shifts of
        ``test_shifts``), each ``(B, C, S, S)``."""
        return self.view_maker(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, S, S)`` -> ``(B, embedding_dim)``; with ``test_shifts`` or ``test_views``
        in eval mode, the mean over the views (one batch of ``V * B`` through the network)."""
        if self.training or not (self.test_shifts or self.test_views):
            return self._embed(x)
        views = self.view_maker(x)
        return mean_of_views(self._embed(torch.cat(views, 0)), len(views), self.normalized)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        h = h.mean(dim=(2, 3)) if self.pool == "avg" else torch.flatten(h, 1)
        h = self.proj(self.dropout(h))
        return F.normalize(h, dim=1) if self.normalized else h


@contextlib.contextmanager
def single_view(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every encoder of ``model`` with ``test_shifts`` or ``test_views``
    embeds one view (the trainer validates this way: five times
    cheaper, and the views do not change which epoch is best enough to pay for it);
    restored on exit."""
    mods = [m for m in model.modules() if getattr(m, "test_shifts", False)]
    viewed = [(m, m.test_views) for m in model.modules() if getattr(m, "test_views", None)]
    for m in mods:
        m.test_shifts = False
    for m, _ in viewed:
        m.test_views = []
    try:
        yield model
    finally:
        for m in mods:
            m.test_shifts = True
        for m, views in viewed:
            m.test_views = views


def shifted_views(x: torch.Tensor) -> list[torch.Tensor]:
    """``(B, C, H, W)`` -> the image and its 1-pixel shifts right, left, down, up (the edge
    row/column repeated into the gap), five ``(B, C, H, W)`` tensors in the order of
    :func:`twinshot.evaluation.tta.shift_views` (``test_shifts``'s views)."""
    return [x, *shift_views(x, 1)]


@ENCODERS.register("face-resnet")
def face_resnet(
    in_channels: int = 3,
    input_size: int = 150,
    pretrained: bool = True,
    mirror: bool = False,
    train_from: str = "",
    grey_gain: tuple[float, ...] = (1.0, 1.0, 1.0),
    grey_offset: tuple[float, ...] = (0.0, 0.0, 0.0),
) -> Encoder:
    """dlib's ResNet face descriptor from face-api (``(B, 3, 150, 150)`` in [0, 1] -> ``(B, 128)``),
    with its packaged pretrained weights; see :mod:`twinshot.faces.resnet`. ``grey_gain`` and
    ``grey_offset`` map a grey input to colour first (:mod:`twinshot.faces.grey`)."""
    if in_channels != 3 or input_size != 150:
        raise ConfigError("the face-resnet encoder takes 3x150x150 RGB inputs (channels=3, size 150x150)")
    from twinshot.faces.resnet import FaceResNet  # the packaged weights load only when asked for

    return FaceResNet(pretrained=pretrained, mirror=mirror, train_from=train_from, grey_gain=tuple(grey_gain), grey_offset=tuple(grey_offset))
