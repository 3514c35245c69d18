"""A fixed grey-to-colour input map for the face encoder (dlib's net was trained on colour).

A greyscale photo reaches the encoder as its grey value ``Y`` copied to the three channels.
:class:`GreyToColour` replaces that copy by a per-channel affine map
``(R, G, B) = gain * Y + offset`` (6 numbers, fitted once with the encoder frozen: see
docs/applications.md), so grey faces look more like the colour faces the net learned from.
It acts only on images whose three channels are equal (a colour photo passes unchanged),
decided per image, and sits outside the ported net (:meth:`FaceResNet.descriptor` keeps its
parity with face-api).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from twinshot.errors import ConfigError

#: the plain copy of the grey value: (R, G, B) gains, then offsets (on the 0-1 scale)
IDENTITY = ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))


def is_grey(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` -> ``(B,)`` bool: the image's three channels are equal everywhere."""
    return ((x[:, 0] == x[:, 1]) & (x[:, 1] == x[:, 2])).flatten(1).all(dim=1)


class GreyToColour(nn.Module):
    """``(B, 3, H, W)`` -> ``(B, 3, H, W)``: grey images mapped to ``gain * Y + offset``.

    Args:
        gain: the three channel gains (R, G, B).
        offset: the three channel offsets, on the 0-1 scale of the input.
    """

    def __init__(self, gain: Sequence[float] = IDENTITY[0], offset: Sequence[float] = IDENTITY[1]) -> None:
        super().__init__()
        if len(gain) != 3 or len(offset) != 3:
            raise ConfigError(f"grey_gain and grey_offset take 3 numbers each (R, G, B), got {list(gain)} and {list(offset)}")
        self.register_buffer("gain", torch.tensor([float(g) for g in gain]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("offset", torch.tensor([float(o) for o in offset]).view(1, 3, 1, 1), persistent=False)
        #: the plain copy: the encoder skips the map (no per-image cost)
        self.identity = all(float(g) == 1.0 for g in gain) and all(float(o) == 0.0 for o in offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mapped = x[:, :1] * self.gain + self.offset
        return torch.where(is_grey(x)[:, None, None, None], mapped, x)
