"""Online triplet miners: choose ``(anchor, positive, negative)`` index triplets in a
labelled batch from its distance matrix. Vectorised (no Python loop over anchors).

A triplet is *valid* when ``labels[a] == labels[p]``, ``a != p`` and
``labels[a] != labels[n]``. Every miner takes ``distances (B, B)`` (smaller is closer,
already computed by the loss; mining never back-propagates) and ``labels (B,)``, and
returns three ``int64`` index tensors of equal length ``T`` (possibly 0).

Definitions follow pytorch-metric-learning (PML) so the values can be checked against it:

* ``"all"`` (:class:`AllTripletsMiner`): every valid triplet; PML's ``AllTripletsMiner``.
  :class:`~twinshot.losses.TripletLoss` averages over the *active* ones (loss > 0),
  like PML's ``AvgNonZeroReducer``.
* ``"batch_hard"`` (:class:`BatchHardMiner`, Hermans et al. 2017): per anchor, its
  farthest positive and its closest negative; anchors without a positive or a negative
  in the batch are skipped. PML's ``BatchHardMiner``; the loss averages over the mined
  triplets, zeros included (PML's ``MeanReducer``).
* ``"semi_hard"`` (:class:`SemiHardMiner`, Schroff et al. 2015): every valid triplet whose
  negative is farther than the positive but inside the margin,
  ``D(a,p) < D(a,n) < D(a,p) + margin``. PML's ``TripletMarginMiner(type_of_triplets=
  "semihard")`` keeps ``D(a,n) <= D(a,p) + margin``; the extra triplets at exact
  equality have loss 0, so with ``AvgNonZeroReducer`` the two agree (the loss averages
  over the mined triplets, which are all active). This is *not*
  FaceNet's own recipe (one semi-hard negative drawn per positive pair) nor TensorFlow
  Addons' (the closest semi-hard negative per pair, else the farthest negative): all
  semi-hard triplets are kept and averaged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from twinshot.errors import ConfigError
from twinshot.registry import Registry

#: ``(anchor, positive, negative)`` indices, each ``(T,)`` int64.
Triplets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``positive (B, B)``: same label and not the diagonal; ``negative (B, B)``: different label."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


class TripletMiner(ABC):
    """Chooses triplets from a labelled batch; see the module docstring."""

    #: How :class:`~twinshot.losses.TripletLoss` averages the mined triplets' losses:
    #: ``"nonzero"`` (mean over triplets with loss > 0; 0 if none) or ``"mean"``.
    reduction: ClassVar[str] = "mean"

    def __call__(self, distances: torch.Tensor, labels: torch.Tensor) -> Triplets:
        """``distances (B, B)``, ``labels (B,)`` -> ``(anchor, positive, negative)`` ``(T,)`` each."""
        with torch.no_grad():
            return self.mine(distances.detach(), labels)

    @abstractmethod
    def mine(self, distances: torch.Tensor, labels: torch.Tensor) -> Triplets: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


MINERS: Registry[TripletMiner] = Registry("miner")


@MINERS.register("all")
class AllTripletsMiner(TripletMiner):
    """Every valid triplet (``B^3`` booleans of memory)."""

    reduction = "nonzero"

    def mine(self, distances: torch.Tensor, labels: torch.Tensor) -> Triplets:
        positive, negative = pair_masks(labels)
        valid = positive[:, :, None] & negative[:, None, :]
        a, p, n = valid.nonzero(as_tuple=True)
        return a, p, n


@MINERS.register("batch_hard")
class BatchHardMiner(TripletMiner):
    """Per anchor, the farthest positive and the closest negative (one triplet per anchor
    that has both)."""

    reduction = "mean"

    def mine(self, distances: torch.Tensor, labels: torch.Tensor) -> Triplets:
        positive, negative = pair_masks(labels)
        hardest_p = distances.masked_fill(~positive, float("-inf")).argmax(1)
        hardest_n = distances.masked_fill(~negative, float("inf")).argmin(1)
        anchors = torch.nonzero(positive.any(1) & negative.any(1), as_tuple=True)[0]
        return anchors, hardest_p[anchors], hardest_n[anchors]


@MINERS.register("semi_hard")
class SemiHardMiner(TripletMiner):
    """Every valid triplet with ``D(a,p) < D(a,n) < D(a,p) + margin``.

    Args:
        margin: the triplet loss's margin (> 0, else nothing is semi-hard).

    All mined triplets have loss > 0 by construction; the reduction is ``"nonzero"`` only
    so that a rounding-level zero at the boundary cannot change the average.
    """

    reduction = "nonzero"

    def __init__(self, margin: float = 0.2) -> None:
        if not margin > 0:
            raise ConfigError(f"semi-hard mining needs a margin > 0, got {margin}")
        self.margin = float(margin)

    def mine(self, distances: torch.Tensor, labels: torch.Tensor) -> Triplets:
        positive, negative = pair_masks(labels)
        ap = distances[:, :, None]  # (B, B, 1): D(a, p)
        an = distances[:, None, :]  # (B, 1, B): D(a, n)
        valid = positive[:, :, None] & negative[:, None, :] & (an > ap) & (an < ap + self.margin)
        a, p, n = valid.nonzero(as_tuple=True)
        return a, p, n

    def __repr__(self) -> str:
        return f"SemiHardMiner(margin={self.margin})"
