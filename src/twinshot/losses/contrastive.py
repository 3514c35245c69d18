"""The contrastive loss of Hadsell, Chopra & LeCun (2006)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from twinshot.errors import ConfigError
from twinshot.losses.base import LOSSES, Loss
from twinshot.losses.distances import safe_sqrt


@LOSSES.register("contrastive")
class ContrastiveLoss(Loss):
    """Contrastive loss on pairs of embeddings (Hadsell, Chopra & LeCun 2006).

    For pairs ``(e1_i, e2_i)`` at Euclidean distance ``D_i = ||e1_i - e2_i||_2``::

        L_i = same_i * 0.5 * D_i^2  +  (1 - same_i) * 0.5 * max(0, margin - D_i)^2
        L   = mean_i L_i

    Same-class pairs are pulled together; different-class pairs are pushed apart until
    they are ``margin`` apart, and cost nothing beyond it.

    ``same`` must be a **bool** tensor (True = the pair shows one class). The seed article
    states the 0/1 label convention both ways, so numeric labels are refused with a
    :class:`~twinshot.errors.DataError` rather than silently read the wrong way round.

    Args:
        margin: distance beyond which different-class pairs cost nothing (> 0).

    Call: ``loss(embeddings1 (B, D), embeddings2 (B, D), same (B,) bool) -> ()``.
    """

    batch_kind = "pairs"

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        if not margin > 0:
            raise ConfigError(f"contrastive margin must be > 0, got {margin}")
        self.margin = float(margin)

    def forward(self, embeddings1: torch.Tensor, embeddings2: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        e1 = self.check_embeddings("embeddings1", embeddings1)
        e2 = self.check_embeddings("embeddings2", embeddings2)
        self.check_same_shape(embeddings1=e1, embeddings2=e2)
        same = self.check_same(same, e1.shape[0])
        sq = ((e1 - e2) ** 2).sum(1)  # D^2, exact gradient for the "same" term
        pull = 0.5 * sq
        push = 0.5 * F.relu(self.margin - safe_sqrt(sq)) ** 2
        return torch.where(same, pull, push).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
