"""The prototypical-network loss of Snell, Swersky & Zemel (2017), for episodic training."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from twinshot.errors import ConfigError, DataError
from twinshot.losses.base import LOSSES, Loss
from twinshot.losses.distances import DISTANCES, Distance


@LOSSES.register("prototypical")
class PrototypicalLoss(Loss):
    """Cross-entropy of the query points against class prototypes (Snell et al. 2017).

    For an episode with support ``s (n_way * n_shot, D)`` labelled ``0..n_way-1``::

        c_k      = mean of the support embeddings of class k          (n_way, D)
        logit_qk = -D(query_q, c_k) / temperature                     (Q, n_way)
        L        = mean_q -log softmax(logit_q)[query_labels_q]

    with ``D`` ``"squared_euclidean"`` (Snell et al.'s choice, the default) or
    ``"euclidean"``; with ``"cosine"`` the logits are ``cos(query_q, c_k) / temperature``
    (the cosine distance ``1 - cos`` shifted by a constant, which softmax ignores).
    Support classes may have different numbers of shots; every class ``0..n_way-1`` must
    have at least one.

    Args:
        distance: ``"squared_euclidean"``, ``"euclidean"`` or ``"cosine"``.
        temperature: divides the logits (> 0); with cosine, values around 0.1 are usual.

    Call: ``loss(support (N, D), support_labels (N,), query (Q, D), query_labels (Q,)) -> ()``.
    ``accuracy(...)`` (same arguments) gives the episode's query accuracy for logging.
    """

    batch_kind = "episode"

    def __init__(self, distance: str = "squared_euclidean", temperature: float = 1.0) -> None:
        super().__init__()
        if not (math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"prototypical temperature must be > 0, got {temperature}")
        self.distance: Distance = DISTANCES.build(distance)
        self.temperature = float(temperature)

    def _check_support(self, support: torch.Tensor, support_labels: torch.Tensor) -> int:
        s = self.check_embeddings("support", support)
        labels = self.check_labels(support_labels, s.shape[0], "support_labels")
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0:
            raise DataError(f"`support_labels` must be in [0, n_way), got {lo}")
        n_way = hi + 1
        counts = torch.bincount(labels, minlength=n_way)
        if bool((counts == 0).any()):
            missing = torch.nonzero(counts == 0).flatten().tolist()
            raise DataError(
                f"`support_labels` must cover every class 0..{n_way - 1}; no support for {missing}"
            )
        return n_way

    def prototypes(self, support: torch.Tensor, support_labels: torch.Tensor) -> torch.Tensor:
        """Class means ``(n_way, D)`` of ``support (N, D)`` labelled ``support_labels (N,)``."""
        n_way = self._check_support(support, support_labels)
        sums = support.new_zeros((n_way, support.shape[1])).index_add(0, support_labels, support)
        counts = torch.bincount(support_labels, minlength=n_way).to(support.dtype)
        return sums / counts[:, None]

    def logits(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """``(Q, n_way)`` logits of each query point for each class (higher is more likely)."""
        protos = self.prototypes(support, support_labels)
        q = self.check_embeddings("query", query, dim=support.shape[1])
        return self.distance.pairwise_similarity(q, protos) / self.temperature

    def _check_query_labels(self, query_labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        labels = self.check_labels(query_labels, logits.shape[0], "query_labels")
        n_way = logits.shape[1]
        if bool(((labels < 0) | (labels >= n_way)).any()):
            raise DataError(f"`query_labels` must be in [0, {n_way}) (the support classes)")
        return labels

    def loss_and_accuracy(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, query_labels: torch.Tensor
    ) -> tuple[torch.Tensor, float]:
        """The loss ``()`` and the fraction of query points whose most likely class is right."""
        logits = self.logits(support, support_labels, query)
        labels = self._check_query_labels(query_labels, logits)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.detach().argmax(1) == labels).float().mean().item()
        return loss, accuracy

    def forward(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, query_labels: torch.Tensor
    ) -> torch.Tensor:
        logits = self.logits(support, support_labels, query)
        return F.cross_entropy(logits, self._check_query_labels(query_labels, logits))

    @torch.no_grad()
    def accuracy(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, query_labels: torch.Tensor
    ) -> float:
        """Fraction of query points classified correctly (nearest prototype), in [0, 1]."""
        return self.loss_and_accuracy(support, support_labels, query, query_labels)[1]

    def extra_repr(self) -> str:
        return f"distance={self.distance.name!r}, temperature={self.temperature}"
