"""face-api's tiny face detector (a Tiny-YOLOv2 with depthwise-separable convs), in PyTorch.

The image is padded to a square (zeros at the bottom/right), resized to ``input_size``
(a multiple of 32; 416 by default) with tfjs's bilinear resize, normalised by
``(x - mean RGB (117.001, 114.697, 97.404)) / 255``, and run through
conv 3x3 (valid) + leaky ReLU, five separable conv blocks with max-pools, and a 1x1 conv
giving ``(5 anchors x [x, y, w, h, score])`` per cell of a 13x13 grid (at 416). Boxes with
``sigmoid(score) > score_threshold`` are kept and de-duplicated by non-maximum suppression
at IoU 0.4, as in the package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from twinshot.faces.ops import max_pool_same, pad_to_square, resize_bilinear
from twinshot.faces.weights import depthwise_to_torch, hwio_to_oihw, load_packaged

MEAN_RGB = (117.001, 114.697, 97.404)
ANCHORS = ((1.603231, 2.094468), (6.041143, 7.080126), (2.882459, 3.518061), (4.266906, 5.178857), (9.041765, 10.66308))
IOU_THRESHOLD = 0.4
WIDTHS = (16, 32, 64, 128, 256, 512)


@dataclass(frozen=True)
class FaceBox:
    """A detected face in image pixels: top-left ``(x, y)``, ``width``, ``height``, ``score``."""

    x: float
    y: float
    width: float
    height: float
    score: float

    @property
    def area(self) -> float:
        return self.width * self.height


def _leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


class TinyFaceDetector(nn.Module):
    """``detect(image (H, W, 3) uint8) -> list[FaceBox]``, best score first."""

    def __init__(self) -> None:
        super().__init__()
        w = load_packaged("tiny_face_detector")
        self.conv0 = nn.Conv2d(3, 16, 3)
        with torch.no_grad():
            self.conv0.weight.copy_(hwio_to_oihw(w["conv0/filters"]))
            self.conv0.bias.copy_(w["conv0/bias"])
        self.depthwise = nn.ParameterList()
        self.pointwise = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i in range(1, 6):
            self.depthwise.append(nn.Parameter(depthwise_to_torch(w[f"conv{i}/depthwise_filter"]), requires_grad=False))
            self.pointwise.append(nn.Parameter(hwio_to_oihw(w[f"conv{i}/pointwise_filter"]), requires_grad=False))
            self.biases.append(nn.Parameter(w[f"conv{i}/bias"], requires_grad=False))
        self.conv8 = nn.Conv2d(512, 25, 1)
        with torch.no_grad():
            self.conv8.weight.copy_(hwio_to_oihw(w["conv8/filters"]))
            self.conv8.bias.copy_(w["conv8/bias"])
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` float 0-255 (already square and resized) -> ``(B, 25, S/32, S/32)``."""
        h = _leaky(self.conv0((x - self.mean) / 255.0))
        h = max_pool_same(h, 2, 2)
        for i in range(5):
            h = F.pad(h, (1, 1, 1, 1))
            h = F.conv2d(h, self.depthwise[i], groups=h.shape[1])
            h = _leaky(F.conv2d(h, self.pointwise[i], self.biases[i]))
            h = max_pool_same(h, 2, 2 if i < 4 else 1)
        return self.conv8(h)

    @torch.no_grad()
    def detect(self, image: np.ndarray, input_size: int = 416, score_threshold: float = 0.5) -> list[FaceBox]:
        """Faces in an ``(H, W, 3)`` uint8 RGB image, in its pixel coordinates, best first."""
        height, width = image.shape[:2]
        x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].float()
        x = resize_bilinear(pad_to_square(x, centre=False), (input_size, input_size))
        out = self.forward(x)[0]  # (25, n, n)
        n = out.shape[-1]
        out = out.permute(1, 2, 0).reshape(n, n, 5, 5).double()
        scale = input_size / max(height, width)
        corr_x = input_size / math.floor(width * scale + 0.5)
        corr_y = input_size / math.floor(height * scale + 0.5)
        scores = torch.sigmoid(out[..., 4])
        rows, cols, anchors = torch.nonzero(scores > score_threshold, as_tuple=True)
        anchor_wh = torch.tensor(ANCHORS, dtype=torch.float64)
        boxes = []
        for r, c, a in zip(rows.tolist(), cols.tolist(), anchors.tolist()):
            tx, ty, tw, th = out[r, c, a, :4].tolist()
            cx = (c + 1 / (1 + math.exp(-tx))) / n * corr_x
            cy = (r + 1 / (1 + math.exp(-ty))) / n * corr_y
            bw = math.exp(tw) * anchor_wh[a, 0].item() / n * corr_x
            bh = math.exp(th) * anchor_wh[a, 1].item() / n * corr_y
            boxes.append((cx - bw / 2, cy - bh / 2, bw, bh, float(scores[r, c, a])))
        keep = _nms([(b[0] * input_size, b[1] * input_size, b[2] * input_size, b[3] * input_size) for b in boxes], [b[4] for b in boxes])
        return [FaceBox(boxes[i][0] * width, boxes[i][1] * height, boxes[i][2] * width, boxes[i][3] * height, boxes[i][4]) for i in keep]


def _nms(boxes: list[tuple[float, float, float, float]], scores: list[float], iou_threshold: float = IOU_THRESHOLD) -> list[int]:
    """face-api's greedy non-maximum suppression on ``(x, y, w, h)`` boxes, best score first."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    pick: list[int] = []
    while order:
        cur = order.pop()
        pick.append(cur)
        x, y, w, h = boxes[cur]
        kept = []
        for i in order:
            bx, by, bw, bh = boxes[i]
            iw = max(0.0, min(x + w, bx + bw) - max(x, bx))
            ih = max(0.0, min(y + h, by + bh) - max(y, by))
            inter = iw * ih
            if inter / (w * h + bw * bh - inter) <= iou_threshold:
                kept.append(i)
        order = kept
    return pick
