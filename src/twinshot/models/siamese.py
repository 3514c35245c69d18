"""The Siamese network: one encoder applied to both inputs (shared weights), and a head."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from twinshot.data.images import Preprocessing
from twinshot.models.encoders import ENCODERS, Encoder
from twinshot.models.heads import HEADS, Head


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model, saved beside its weights as JSON."""

    encoder: str = "compact"
    encoder_params: dict[str, Any] = field(default_factory=dict)
    head: str = "cosine"
    head_params: dict[str, Any] = field(default_factory=dict)
    preprocessing: Preprocessing = field(default_factory=lambda: Preprocessing(size=(28, 28), invert=True))

    def to_dict(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder,
            "encoder_params": dict(self.encoder_params),
            "head": self.head,
            "head_params": dict(self.head_params),
            "preprocessing": self.preprocessing.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        d = dict(d)
        d["preprocessing"] = Preprocessing.from_dict(d.get("preprocessing", {}))
        return cls(**d)


class SiameseNetwork(nn.Module):
    """Two copies of one encoder (the same module, so the weights are shared) and a head.

    Args:
        encoder: maps ``(B, C, H, W)`` to ``(B, D)``.
        head: maps two ``(B, D)`` embeddings to ``(B,)`` logits of "same class".
        preprocessing: how raw images become input (stored with the model).
        spec: the spec it was built from (for saving); optional.
    """

    def __init__(
        self,
        encoder: Encoder,
        head: Head,
        preprocessing: Preprocessing | None = None,
        spec: ModelSpec | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        c, h, w = encoder.input_shape
        self.preprocessing = preprocessing or Preprocessing(size=(h, w), channels=c)
        self.spec = spec

    @property
    def embedding_dim(self) -> int:
        return self.encoder.embedding_dim

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """One branch (the seed article's ``forward_one``): ``(B, C, H, W)`` float -> ``(B, D)``."""
        return self.encoder(x)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Logits ``(B,)`` that ``x1[i]`` and ``x2[i]`` show the same class. Both inputs go
        through the encoder in one batch."""
        e = self.encoder(torch.cat([x1, x2], 0))
        e1, e2 = e.split([x1.shape[0], x2.shape[0]])
        return self.head(e1, e2)

    def similarity(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Probability ``(B,)`` in [0, 1] that the pairs show the same class."""
        return torch.sigmoid(self.forward(x1, x2))

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Embed uint8 images ``(N, C, H, W)`` (already at the model's size) in eval mode,
        in batches; returns float32 ``(N, D)``."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        try:
            out = [
                self.encoder(self.preprocessing.to_float(images[i : i + batch_size].to(device)))
                for i in range(0, images.shape[0], batch_size)
            ]
        finally:
            self.train(was_training)
        if not out:
            return torch.zeros((0, self.embedding_dim))
        return torch.cat(out, 0)


def build_model(spec: ModelSpec) -> SiameseNetwork:
    """Build a fresh (untrained) network from a spec. Unknown names or parameters raise
    :class:`twinshot.errors.ConfigError` listing the valid ones."""
    c = spec.preprocessing.channels
    enc_params = dict(spec.encoder_params)
    enc_params.setdefault("in_channels", c)
    enc_params.setdefault("input_size", spec.preprocessing.size[0])
    encoder = ENCODERS.build(spec.encoder, **enc_params)
    head_params = dict(spec.head_params)
    if "embedding_dim" in HEADS.parameters(spec.head):
        head_params.setdefault("embedding_dim", encoder.embedding_dim)
    head = HEADS.build(spec.head, **head_params)
    return SiameseNetwork(encoder, head, spec.preprocessing, spec)
