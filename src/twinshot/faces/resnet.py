"""The dlib ResNet face descriptor of face-api (``FaceRecognitionNet``), in PyTorch.

Input ``(B, 3, 150, 150)`` RGB scaled to [0, 1]; the net subtracts the face-api mean RGB
(122.782, 117.001, 104.298)/255 itself, so the model's preprocessing is only ``/255``.
Output ``(B, 128)``, not normalised (face-api compares descriptors by Euclidean distance,
0.6 being its usual "same person" tolerance).

Layers, as in ``src/faceRecognitionNet/`` of the package: conv 7x7/2 (valid) + scale + ReLU,
max-pool 3/2 (valid); residual blocks of two 3x3 convs, each followed by a per-channel
scale layer (``x * w + b``, dlib's affine layer); the downsampling blocks use a 3x3/2 valid
conv, an average-pool 2/2 shortcut zero-padded in channels, and a zero row/column appended
at the bottom/right of the conv branch when it is one pixel smaller than the shortcut; a
global average pool and ``x @ fc`` (``fc`` is ``(256, 128)``, no bias).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from twinshot.errors import ConfigError
from twinshot.faces.grey import IDENTITY, GreyToColour
from twinshot.faces.weights import hwio_to_oihw, load_packaged
from twinshot.models.encoders import Encoder

#: face-api's mean RGB, on the 0-255 scale.
MEAN_RGB = (122.782, 117.001, 104.298)

#: (name, in channels, out channels, downsampling) of the residual blocks, in order.
BLOCKS = (
    ("conv32_1", 32, 32, False), ("conv32_2", 32, 32, False), ("conv32_3", 32, 32, False),
    ("conv64_down", 32, 64, True), ("conv64_1", 64, 64, False), ("conv64_2", 64, 64, False), ("conv64_3", 64, 64, False),
    ("conv128_down", 64, 128, True), ("conv128_1", 128, 128, False), ("conv128_2", 128, 128, False),
    ("conv256_down", 128, 256, True), ("conv256_1", 256, 256, False), ("conv256_2", 256, 256, False),
    ("conv256_down_out", 256, 256, True),
)


class ConvScale(nn.Module):
    """conv (with bias) then dlib's per-channel affine ``x * weight + bias``."""

    def __init__(self, cin: int, cout: int, k: int, stride: int) -> None:
        super().__init__()
        # "same" padding only occurs with stride 1 (symmetric pad k//2); stride 2 is "valid".
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=k // 2 if stride == 1 else 0)
        self.weight = nn.Parameter(torch.ones(cout))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.weight[:, None, None] + self.bias[:, None, None]

    def load_tf(self, w: dict[str, torch.Tensor], prefix: str) -> None:
        with torch.no_grad():
            self.conv.weight.copy_(hwio_to_oihw(w[f"{prefix}/conv/filters"]))
            self.conv.bias.copy_(w[f"{prefix}/conv/bias"])
            self.weight.copy_(w[f"{prefix}/scale/weights"])
            self.bias.copy_(w[f"{prefix}/scale/biases"])


class Residual(nn.Module):
    """A residual block; ``down`` halves the resolution (and may double the channels)."""

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = ConvScale(cin, cout, 3, 2 if down else 1)
        self.conv2 = ConvScale(cout, cout, 3, 1)
        self.extra_channels = cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        if not self.down:
            return F.relu(out + x)
        shortcut = F.avg_pool2d(x, 2, 2)
        dh, dw = shortcut.shape[2] - out.shape[2], shortcut.shape[3] - out.shape[3]
        if dh or dw:  # zeros appended at the bottom / right, as face-api does
            out = F.pad(out, (0, dw, 0, dh))
        if self.extra_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        return F.relu(out + shortcut)


class FaceResNet(Encoder):
    """``(B, 3, 150, 150)`` in [0, 1] -> ``(B, 128)`` face descriptors.

    Args:
        pretrained: load the packaged face-api weights (dlib's ResNet trained on about
            3 million faces of 7,485 people); ``False`` leaves a random initialisation.
        mirror: return the mean of the descriptors of the image and of its left-right
            mirror image (twice the compute; usually a little more accurate).
        train_from: fine-tune only from this layer on (a block name of :data:`BLOCKS`, or
            ``"fc"``): everything before it is frozen (``requires_grad`` off) and run without
            autograd, which saves its backward pass. ``""``: the whole net trains.
        grey_gain, grey_offset: the (R, G, B) gains and offsets of the grey-to-colour map
            applied to grey inputs (three equal channels) before the net
            (:class:`twinshot.faces.grey.GreyToColour`); the defaults copy the grey value,
            and a colour input is never changed.
    """

    embedding_dim = 128
    input_shape = (3, 150, 150)
    normalized = False

    def __init__(
        self,
        pretrained: bool = True,
        mirror: bool = False,
        train_from: str = "",
        grey_gain: tuple[float, ...] = IDENTITY[0],
        grey_offset: tuple[float, ...] = IDENTITY[1],
    ) -> None:
        super().__init__()
        names = [name for name, *_ in BLOCKS]
        if train_from not in ("", *names, "fc"):
            raise ConfigError(f"face-resnet train_from must be '', 'fc' or a block name ({', '.join(names)}), got {train_from!r}")
        self.mirror = mirror
        self.grey = GreyToColour(grey_gain, grey_offset)
        #: blocks run without autograd (-1: none, the stem trains too)
        self.n_frozen = -1 if not train_from else (len(BLOCKS) if train_from == "fc" else names.index(train_from))
        self.register_buffer("mean", torch.tensor(MEAN_RGB).div(255.0).view(1, 3, 1, 1), persistent=False)
        self.stem = ConvScale(3, 32, 7, 2)
        self.blocks = nn.ModuleList(Residual(cin, cout, down) for _, cin, cout, down in BLOCKS)
        self.fc = nn.Parameter(torch.empty(256, 128))
        nn.init.normal_(self.fc, 0.0, 256 ** -0.5)
        #: the weights come from the package, so a saved model may leave them out
        self.packaged_weights = pretrained
        if pretrained:
            self.load_face_api()
        if self.n_frozen >= 0:
            for module in (self.stem, *self.blocks[: self.n_frozen]):
                module.requires_grad_(False)

    def load_face_api(self) -> None:
        """Copy the packaged face-api weights in (TensorFlow layout converted)."""
        self.load_tensors(load_packaged("face_recognition"))

    def load_tensors(self, w: dict[str, torch.Tensor]) -> None:
        """Copy float32 tensors named and laid out as face-api's ``face_recognition`` net in
        (``scripts/dlib_dat.py`` makes them from dlib's own file)."""
        self.stem.load_tf(w, "conv32_down")
        for block, (name, *_rest) in zip(self.blocks, BLOCKS):
            block.conv1.load_tf(w, f"{name}/conv1")
            block.conv2.load_tf(w, f"{name}/conv2")
        with torch.no_grad():
            self.fc.copy_(w["fc"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 150, 150)`` RGB in [0, 1] -> ``(B, 128)``; grey images go through
        :attr:`grey` first."""
        if not self.grey.identity:
            x = self.grey(x)
        if self.mirror:
            b = x.shape[0]
            out = self.descriptor(torch.cat([x, x.flip(3)], 0))
            return (out[:b] + out[b:]) / 2
        return self.descriptor(x)

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        """face-api's descriptor of ``(B, 3, 150, 150)`` -> ``(B, 128)``."""
        frozen = self.n_frozen
        with torch.set_grad_enabled(torch.is_grad_enabled() and frozen < 0):
            h = F.relu(self.stem(x - self.mean))
            h = F.max_pool2d(h, 3, 2)
            for block in self.blocks[: max(frozen, 0)]:
                h = block(h)
        for block in self.blocks[max(frozen, 0) :]:
            h = block(h)
        return h.mean(dim=(2, 3)) @ self.fc
