"""From a sampler's batch of indices to a loss value, one function per ``batch_kind``.

Images are taken from the in-memory uint8 tensor by indexing, converted once per batch
(``preprocessing.to_float``) and augmented as one batch; every image of a step goes
through the encoder in a single forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from twinshot.data.images import Preprocessing
from twinshot.errors import ConfigError


@dataclass
class BatchContext:
    """What every step function needs besides the batch.

    Attributes:
        images: uint8 ``(N, C, H, W)``, the training set.
        labels: int64 ``(N,)``.
        preprocessing: converts uint8 to float model input.
        augment: float ``(B, C, H, W)`` -> augmented ``(B, C, H, W)`` (identity when off).
    """

    images: torch.Tensor
    labels: torch.Tensor
    preprocessing: Preprocessing
    augment: Callable[[torch.Tensor], torch.Tensor]

    def inputs(self, idx: torch.Tensor) -> torch.Tensor:
        """Float, augmented model input ``(B, C, H, W)`` for the images ``idx (B,)``."""
        return self.augment(self.preprocessing.to_float(self.images[idx]))


#: ``step(model, loss, batch, ctx) -> (loss value (), number of images)``
StepFunction = Callable[[nn.Module, nn.Module, Any, BatchContext], "tuple[torch.Tensor, int]"]


def pairs_step(model: nn.Module, loss: nn.Module, batch: Any, ctx: BatchContext) -> tuple[torch.Tensor, int]:
    """``PairBatch(idx1 (B,), idx2 (B,), same (B,) bool)``: contrastive on the embeddings,
    or binary cross-entropy on the head's logits."""
    from twinshot.losses import PairBCELoss

    n = batch.idx1.shape[0]
    e = model.embed(ctx.inputs(torch.cat([batch.idx1, batch.idx2])))
    e1, e2 = e[:n], e[n:]
    if isinstance(loss, PairBCELoss):
        value = loss(model.head(e1, e2), batch.same, model=model)
    else:
        value = loss(e1, e2, batch.same)
    return value, 2 * n


def triplets_step(model: nn.Module, loss: nn.Module, batch: Any, ctx: BatchContext) -> tuple[torch.Tensor, int]:
    """``TripletBatch(anchor (B,), positive (B,), negative (B,))`` of indices."""
    n = batch.anchor.shape[0]
    e = model.embed(ctx.inputs(torch.cat([batch.anchor, batch.positive, batch.negative])))
    return loss(e[:n], e[n : 2 * n], e[2 * n :]), 3 * n


def labelled_step(model: nn.Module, loss: nn.Module, batch: Any, ctx: BatchContext) -> tuple[torch.Tensor, int]:
    """A class-balanced batch of indices ``(B,)``; the loss mines pairs or triplets in it."""
    idx = batch if isinstance(batch, torch.Tensor) else batch.indices
    e = model.embed(ctx.inputs(idx))
    return loss(e, ctx.labels[idx]), int(idx.shape[0])


def episode_step(model: nn.Module, loss: nn.Module, batch: Any, ctx: BatchContext) -> tuple[torch.Tensor, int]:
    """``Episode(support (S,), support_labels (S,), query (Q,), query_labels (Q,))``."""
    s = batch.support.shape[0]
    e = model.embed(ctx.inputs(torch.cat([batch.support, batch.query])))
    return loss(e[:s], batch.support_labels, e[s:], batch.query_labels), int(s + batch.query.shape[0])


STEPS: dict[str, StepFunction] = {
    "pairs": pairs_step,
    "triplets": triplets_step,
    "labelled": labelled_step,
    "episode": episode_step,
}


def step_function(batch_kind: str) -> StepFunction:
    try:
        return STEPS[batch_kind]
    except KeyError:
        raise ConfigError(f"no training step for batch kind {batch_kind!r}; valid: {', '.join(STEPS)}") from None
