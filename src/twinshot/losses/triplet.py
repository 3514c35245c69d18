"""The triplet margin loss, on explicit triplets or with online mining."""

from __future__ import annotations

from typing import overload

import torch
import torch.nn.functional as F

from twinshot.errors import ConfigError, DataError
from twinshot.losses.base import LOSSES, Loss
from twinshot.losses.distances import DISTANCES, Distance
from twinshot.losses.miners import MINERS, TripletMiner


@LOSSES.register("triplet")
class TripletLoss(Loss):
    """Triplet margin loss (Weinberger & Saul 2009; Schroff et al. 2015)::

        L(a, p, n) = max(0, D(a, p) - D(a, n) + margin)

    with ``D`` smaller-is-closer: ``"euclidean"`` ``||x - y||``, ``"squared_euclidean"``
    ``||x - y||^2`` or ``"cosine"`` ``1 - cos(x, y)``.

    Two call forms:

    * ``loss(anchor (B, D), positive (B, D), negative (B, D)) -> ()``: explicit triplets,
      ``mean_i L(a_i, p_i, n_i)``.
    * ``loss(embeddings (B, D), labels (B,) int) -> ()``: online mining in the batch
      (see :mod:`twinshot.losses.miners` for the exact definitions):

      - ``"all"``: every valid triplet; the mean over the *active* ones (``L > 0``), 0 if none;
      - ``"batch_hard"``: per anchor the farthest positive and the closest negative; the
        mean over anchors that have both;
      - ``"semi_hard"``: triplets with ``D(a,p) < D(a,n) < D(a,p) + margin``; their mean.

      A batch without any valid triplet gives 0 (with zero gradients).

    ``batch_kind`` is ``"labelled"`` (the trainer feeds class-balanced batches for
    mining); the explicit form is there for callers that build triplets themselves.

    Args:
        margin: the margin (>= 0; > 0 for ``"semi_hard"``).
        mining: ``"all"``, ``"batch_hard"`` or ``"semi_hard"``; ``"none"`` takes explicit
            triplets only (``batch_kind = "triplets"``: the trainer's triplet sampler, e.g.
            with a writer's skilled forgeries as negatives).
        distance: ``"euclidean"``, ``"squared_euclidean"`` or ``"cosine"``.
    """

    batch_kind = "labelled"

    def __init__(self, margin: float = 0.2, mining: str = "all", distance: str = "euclidean") -> None:
        super().__init__()
        if not margin >= 0:
            raise ConfigError(f"triplet margin must be >= 0, got {margin}")
        self.margin = float(margin)
        self.distance: Distance = DISTANCES.build(distance)
        self.mining = mining
        if mining == "none":  # explicit triplets from the trainer's triplet sampler
            self.batch_kind = "triplets"
            return
        params = {"margin": self.margin} if "margin" in MINERS.parameters(mining) else {}
        self.miner: TripletMiner = MINERS.build(mining, **params)

    @overload
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...
    @overload
    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor: ...

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) == 3:
            return self.triplets(*inputs)
        if len(inputs) == 2:
            return self.mined(*inputs)
        raise DataError(
            f"TripletLoss takes (embeddings, labels) or (anchor, positive, negative), got {len(inputs)} tensors"
        )

    def triplets(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        """Mean loss of explicit triplets ``anchor, positive, negative (B, D)`` -> ``()``."""
        a = self.check_embeddings("anchor", anchor)
        p = self.check_embeddings("positive", positive)
        n = self.check_embeddings("negative", negative)
        self.check_same_shape(anchor=a, positive=p, negative=n)
        return F.relu(self.distance.paired(a, p) - self.distance.paired(a, n) + self.margin).mean()

    def mined(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of the triplets mined in ``embeddings (B, D)`` with ``labels (B,)`` -> ``()``."""
        if self.mining == "none":
            raise DataError("TripletLoss(mining='none') takes explicit (anchor, positive, negative) triplets")
        e = self.check_embeddings("embeddings", embeddings)
        if isinstance(labels, torch.Tensor) and labels.is_floating_point() and labels.ndim == 2:
            raise DataError(
                "TripletLoss got two (B, D) tensors: pass (embeddings, labels) for mining "
                "or (anchor, positive, negative) for explicit triplets"
            )
        labels = self.check_labels(labels, e.shape[0])
        distances = self.distance.pairwise(e, e)  # (B, B)
        a, p, n = self.miner(distances, labels)
        if a.numel() == 0:
            return self.zero_like_graph(e)
        losses = F.relu(distances[a, p] - distances[a, n] + self.margin)  # (T,)
        if self.miner.reduction == "nonzero":
            active = losses > 0
            count = active.sum()
            return losses.sum() / count.clamp_min(1)
        return losses.mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining!r}, distance={self.distance.name!r}"
