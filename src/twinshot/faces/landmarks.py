"""face-api's 68-point face landmark net, in PyTorch.

A face crop is padded to a square (centred), resized to 112x112 (tfjs bilinear), normalised
by ``(x - mean RGB (122.782, 117.001, 104.298)) / 255``, and run through four dense blocks of
four 3x3 convs (the first block's first conv plain, the others depthwise-separable; each
block halves the resolution: 112 -> 7), a 7x7 average pool and a fully connected layer to
136 values: ``(x, y)`` of the 68 points of the iBUG 300-W convention, relative to the padded
square, which :meth:`FaceLandmarkNet.landmarks` maps back to the crop's pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from twinshot.faces.ops import pad_same, pad_to_square, resize_bilinear, separable_conv
from twinshot.faces.weights import depthwise_to_torch, hwio_to_oihw, load_packaged

MEAN_RGB = (122.782, 117.001, 104.298)
INPUT_SIZE = 112
#: iBUG 68-point index of each point's mirror image (jaw, brows, nose, eyes, mouth reversed).
FLIP68 = (
    tuple(range(16, -1, -1)) + tuple(range(26, 16, -1)) + (27, 28, 29, 30) + (35, 34, 33, 32, 31)
    + (45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40)
    + (54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55) + (64, 63, 62, 61, 60, 67, 66, 65)
)


class FaceLandmarkNet(nn.Module):
    """``landmarks(crop (H, W, 3) uint8) -> (68, 2)`` pixel coordinates in the crop."""

    def __init__(self) -> None:
        super().__init__()
        w = load_packaged("face_landmark_68")
        self.params = nn.ParameterDict()

        def keep(name: str, t: torch.Tensor) -> None:
            self.params[name.replace("/", "_")] = nn.Parameter(t.contiguous(), requires_grad=False)

        keep("dense0/conv0/filters", hwio_to_oihw(w["dense0/conv0/filters"]))
        keep("dense0/conv0/bias", w["dense0/conv0/bias"])
        for b in range(4):
            for c in range(4):
                if b == 0 and c == 0:
                    continue
                p = f"dense{b}/conv{c}"
                keep(f"{p}/depthwise_filter", depthwise_to_torch(w[f"{p}/depthwise_filter"]))
                keep(f"{p}/pointwise_filter", hwio_to_oihw(w[f"{p}/pointwise_filter"]))
                keep(f"{p}/bias", w[f"{p}/bias"])
        keep("fc/weights", w["fc/weights"])
        keep("fc/bias", w["fc/bias"])
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def _p(self, name: str) -> torch.Tensor:
        return self.params[name.replace("/", "_")]

    def _sep(self, x: torch.Tensor, block: int, conv: int, stride: int) -> torch.Tensor:
        p = f"dense{block}/conv{conv}"
        return separable_conv(x, self._p(f"{p}/depthwise_filter"), self._p(f"{p}/pointwise_filter"), self._p(f"{p}/bias"), stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 112, 112)`` float 0-255 -> ``(B, 136)`` relative ``x0, y0, x1, y1, ...``."""
        h = (x - self.mean) / 255.0
        for b in range(4):
            if b == 0:
                out1 = F.relu(F.conv2d(pad_same(h, 3, 2), self._p("dense0/conv0/filters"), self._p("dense0/conv0/bias"), stride=2))
            else:
                out1 = F.relu(self._sep(h, b, 0, 2))
            out2 = self._sep(out1, b, 1, 1)
            out3 = self._sep(F.relu(out1 + out2), b, 2, 1)
            out4 = self._sep(F.relu(out1 + out2 + out3), b, 3, 1)
            h = F.relu(out1 + out2 + out3 + out4)
        h = F.avg_pool2d(h, 7, 2).flatten(1)
        return h @ self._p("fc/weights") + self._p("fc/bias")

    @torch.no_grad()
    def landmarks(self, crop: np.ndarray, mirror: bool = False) -> np.ndarray:
        """68 ``(x, y)`` points (float64, pixels of the crop) of the face in an ``(H, W, 3)`` crop.

        ``mirror``: the mean of the points found in the crop and, mapped back, in its mirror
        image (one batch of two; the points move by about 1% of the face's width, and LFW
        verification gains 0.1-0.25 points, see docs/applications.md)."""
        height, width = crop.shape[:2]
        x = torch.from_numpy(np.array(crop, dtype=np.uint8)).permute(2, 0, 1)[None].float()
        if mirror:
            x = torch.cat([x, x.flip(3)])
        x = resize_bilinear(pad_to_square(x, centre=True), (INPUT_SIZE, INPUT_SIZE))
        out = self.forward(x).double().view(-1, 68, 2)
        scale = INPUT_SIZE / max(height, width)
        w, h = width * scale, height * scale
        pad_x = abs(w - h) / 2 if w < h else 0.0
        pad_y = abs(w - h) / 2 if h < w else 0.0
        rel_x = (out[..., 0] * INPUT_SIZE - pad_x) / w
        rel_y = (out[..., 1] * INPUT_SIZE - pad_y) / h
        points = torch.stack([rel_x * width, rel_y * height], -1).numpy()
        if not mirror:
            return points[0]
        flipped = points[1][list(FLIP68)]
        flipped[:, 0] = width - flipped[:, 0]  # pixel edges: x -> width - x
        return (points[0] + flipped) / 2
