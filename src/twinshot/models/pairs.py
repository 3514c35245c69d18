"""Pair scorers that look at both images at once, in the encoder/head shape of the package.

A Siamese encoder compresses each image alone; a **pair model** compares the two images
pixel by pixel. To keep the gallery, ``twinshot verify``, ``evaluate verification`` and the
service unchanged, a pair model is split the same way:

* encoder ``pair_input``: the "embedding" of an image is **the image itself**, flattened,
  followed by its handcrafted
  :func:`~twinshot.writer_dependent.handcrafted.signature_descriptor` (3,130 numbers):
  ``(B, 1, H, W) -> (B, H * W + F)``; nothing is learned;
* head ``twochannel_dichotomy``: the fusion of two writer-independent pair scorers
  (docs/applications.md, "Signatures (CEDAR)", runs 16-21):

  - a **2-channel CNN** (:class:`TwoChannelNet`): both images stacked as two input
    channels, conv 5x5/2 and 3x3 blocks (16-32-48-64-96), global mean and max pooling,
    FC 64, one logit "same writer";
  - the **dichotomy transform**: a logistic regression on ``|f(a) - f(b)|`` of the two
    descriptors (the scaler folded into ``lr_weight``, ``lr_bias``);

  each standardised with fixed constants (``a_mean``, ``a_std``, ``b_mean``, ``b_std``,
  measured on the training writers' pairs) and summed: that sum is the head's
  ``similarity``; ``scale * similarity + bias`` its logit (``set_logistic`` calibrates it).

The embedding is large (33,000 + 3,130 floats for 150x220 signatures: 144 KB a row in a
gallery) and every comparison runs the CNN once: meant for verification and claims against
a few references, not for searching large galleries. The encoder computes the descriptor in
numpy, so the model cannot be exported to ONNX or TorchScript (``exportable = False``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from twinshot.errors import ConfigError
from twinshot.models.encoders import ENCODERS, Encoder
from twinshot.models.heads import HEADS, Head


@ENCODERS.register("pair_input")
class PairInputEncoder(Encoder):
    """The image itself plus its handcrafted signature descriptor, for pair heads:
    ``(B, C, H, W)`` float -> ``(B, C * H * W + F)`` (no parameters)."""

    exportable = False

    def __init__(self, in_channels: int = 1, input_size: int = 150, input_width: int | None = None) -> None:
        super().__init__()
        from twinshot.writer_dependent.handcrafted import descriptor_size

        if in_channels != 1:
            raise ConfigError("the pair_input encoder takes grey images (channels = 1)")
        width = int(input_width or input_size)
        if input_size < 12 or width < 18:
            raise ConfigError(f"the pair_input encoder needs images of at least 12x18 pixels, got {input_size}x{width}")
        self.input_shape = (1, int(input_size), width)
        self.n_pixels = int(input_size) * width
        self.n_features = descriptor_size()
        self.embedding_dim = self.n_pixels + self.n_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` -> ``(B, H * W + F)``: pixels, then the descriptor."""
        from twinshot.writer_dependent.handcrafted import signature_descriptor

        if tuple(x.shape[1:]) != self.input_shape:
            raise ConfigError(f"pair_input expects (B, {', '.join(map(str, self.input_shape))}) input, got {tuple(x.shape)}")
        f = torch.from_numpy(signature_descriptor(x)).to(x.device, x.dtype) if x.shape[0] else x.new_zeros((0, self.n_features))
        return torch.cat([x.flatten(1), f], 1)


class TwoChannelNet(nn.Module):
    """Two grey images stacked as channels -> one logit "same writer".

    conv 5x5/2 (``widths[0]``) -> max-pool 2 -> conv 3x3 (``widths[1]``) -> max-pool 2 ->
    two convs 3x3 (``widths[2]``, ``widths[3]``) -> max-pool 2 -> conv 3x3 (``widths[4]``),
    each conv followed by batch norm and ReLU; global mean and max pooling (``2 * widths[4]``),
    dropout, FC 64, ReLU, FC 1. About 0.12 M parameters with the default widths.
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 48, 64, 96), dropout: float = 0.3) -> None:
        super().__init__()
        w = [int(v) for v in widths]
        if len(w) != 5 or min(w) < 1:
            raise ConfigError(f"TwoChannelNet needs 5 positive widths, got {list(widths)}")

        def block(i: int, o: int, k: int = 3, s: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(i, o, k, s, k // 2, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(2, w[0], 5, 2), nn.MaxPool2d(2),
            *block(w[0], w[1]), nn.MaxPool2d(2),
            *block(w[1], w[2]), *block(w[2], w[3]), nn.MaxPool2d(2),
            *block(w[3], w[4]),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * w[4], 64), nn.ReLU(inplace=True), nn.Linear(64, 1))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` twice -> ``(B,)`` logits."""
        x = self.features(torch.cat([a, b], 1))
        x = torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)
        return self.head(x).squeeze(1)


@HEADS.register("twochannel_dichotomy")
class TwoChannelDichotomyHead(Head):
    """Fusion of a 2-channel pair CNN and the dichotomy transform (a logistic regression on
    ``|f(a) - f(b)|`` of handcrafted descriptors), each standardised, summed; for the
    ``pair_input`` encoder's embeddings. See :mod:`twinshot.models.pairs`.

    With ``symmetric`` the CNN's logit is the mean over both channel orders, so
    ``score(a, b) == score(b, a)`` (twice the CNN's cost); without it the CNN sees
    (first, second) as ordered channels."""

    def __init__(
        self,
        embedding_dim: int | None = None,
        image_shape: Sequence[int] = (150, 220),
        widths: Sequence[int] = (16, 32, 48, 64, 96),
        dropout: float = 0.3,
        batch_size: int = 256,
        symmetric: bool = False,
    ) -> None:
        super().__init__(1.0, 0.0)
        self.symmetric = bool(symmetric)
        from twinshot.writer_dependent.handcrafted import descriptor_size

        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.n_pixels = self.image_shape[0] * self.image_shape[1]
        self.n_features = descriptor_size()
        if embedding_dim is not None and int(embedding_dim) != self.n_pixels + self.n_features:
            raise ConfigError(
                f"the twochannel_dichotomy head needs the pair_input encoder's embeddings of an "
                f"{self.image_shape[0]}x{self.image_shape[1]} image ({self.n_pixels + self.n_features} numbers), got {embedding_dim}"
            )
        self.batch_size = int(batch_size)
        self.net = TwoChannelNet(widths, dropout)
        self.register_buffer("lr_weight", torch.zeros(self.n_features))
        self.register_buffer("lr_bias", torch.zeros(()))
        self.register_buffer("fusion", torch.tensor([0.0, 1.0, 0.0, 1.0]))  # a_mean, a_std, b_mean, b_std

    def _split(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if e.shape[-1] != self.n_pixels + self.n_features:
            raise ConfigError(f"twochannel_dichotomy: embeddings of {self.n_pixels + self.n_features} numbers expected, got {e.shape[-1]}")
        img = e[:, : self.n_pixels].reshape(-1, 1, *self.image_shape)
        return img, e[:, self.n_pixels :]

    def parts(self, e1: torch.Tensor, e2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two raw scores ``(B,)``: the CNN's logit and the dichotomy's decision value."""
        cnn, dich = [], []
        for i in range(0, e1.shape[0], self.batch_size):
            x1, f1 = self._split(e1[i : i + self.batch_size])
            x2, f2 = self._split(e2[i : i + self.batch_size])
            logit = self.net(x1, x2)
            if self.symmetric:  # the CNN sees (a, b) as ordered channels: average both orders
                logit = 0.5 * (logit + self.net(x2, x1))
            cnn.append(logit)
            dich.append((f1 - f2).abs() @ self.lr_weight + self.lr_bias)
        if not cnn:
            z = e1.new_zeros((0,))
            return z, z
        return torch.cat(cnn), torch.cat(dich)

    def similarity(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        """``(B,)``: ``(cnn - a_mean) / a_std + (dichotomy - b_mean) / b_std``."""
        a, b = self.parts(e1, e2)
        m = self.fusion
        return (a - m[0]) / m[1] + (b - m[2]) / m[3]

    def pairwise_similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``(Q, N)``: every row of ``a`` against every row of ``b``, ``batch_size`` pairs at a time."""
        q, n = a.shape[0], b.shape[0]
        if q == 0 or n == 0:
            return a.new_zeros((q, n))
        qi = torch.arange(q).repeat_interleave(n)
        ni = torch.arange(n).repeat(q)
        out = [self.similarity(a[qi[k : k + self.batch_size]], b[ni[k : k + self.batch_size]]) for k in range(0, q * n, self.batch_size)]
        return torch.cat(out).reshape(q, n)

    def set_parts(self, lr_weight: np.ndarray, lr_bias: float, fusion: Sequence[float]) -> None:
        """Set the dichotomy's logistic regression (in descriptor units) and the fusion's
        standardisation ``(a_mean, a_std, b_mean, b_std)``."""
        fusion = [float(v) for v in fusion]
        if len(fusion) != 4 or fusion[1] <= 0 or fusion[3] <= 0:
            raise ConfigError(f"fusion must be (a_mean, a_std > 0, b_mean, b_std > 0), got {fusion}")
        with torch.no_grad():
            self.lr_weight.copy_(torch.as_tensor(np.asarray(lr_weight, np.float32).reshape(-1)))
            self.lr_bias.fill_(float(lr_bias))
            self.fusion.copy_(torch.tensor(fusion))
