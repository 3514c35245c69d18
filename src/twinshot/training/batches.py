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
        precision: ``"fp32"``, ``"bf16"`` (the encoder under ``torch.autocast``) or ``"auto"``.
        channels_last: hand the encoder channels-last batches.
    """

    images: torch.Tensor
    labels: torch.Tensor
    preprocessing: Preprocessing
    augment: Callable[[torch.Tensor], torch.Tensor]
    precision: str = "fp32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        self.precision = resolve_precision(self.precision)

    def inputs(self, idx: torch.Tensor) -> torch.Tensor:
        """Float, augmented model input ``(B, C, H, W)`` for the images ``idx (B,)``."""
        x = self.augment(self.preprocessing.to_float(self.images[idx]))
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def embed(self, model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        """float32 embeddings ``(B, D)`` of the images ``idx`` (see :meth:`encode`)."""
        return self.encode(model, self.inputs(idx))

    def encode(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """float32 embeddings of model input ``x``: the encoder runs in the configured
        precision, what follows (loss, head) in float32."""
        if self.precision == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model.embed(x).float()
        return model.embed(x)


#: Values of ``run.precision`` (``"auto"``: see :func:`resolve_precision`).
PRECISIONS = ("fp32", "bf16", "auto")


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), where bf16
    mixed precision is 2-3x faster than float32; elsewhere it is emulated and slower."""
    import torch

    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        return any(bool(check()) for check in checks if check is not None)
    except Exception:  # a private torch API: never let it break training
        return False


def resolve_precision(precision: str) -> str:
    """``run.precision`` -> ``"fp32"`` or ``"bf16"`` (``"auto"``: bf16 where :func:`native_bf16`)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"run.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    return precision


#: ``step(model, loss, batch, ctx) -> (loss value (), number of images)``
StepFunction = Callable[[nn.Module, nn.Module, Any, BatchContext], "tuple[torch.Tensor, int]"]


def pairs_step(model: nn.Module, loss: nn.Module, batch: Any, ctx: BatchContext) -> tuple[torch.Tensor, int]:
    """``PairBatch(idx1 (B,), idx2 (B,), same (B,) bool)``: contrastive on the embeddings,
    or binary cross-entropy on the head's logits."""
    from twinshot.losses import PairBCELoss

    n = batch.idx1.shape[0]
    e = ctx.embed(model, torch.cat([batch.idx1, batch.idx2]))
    e1, e2 = e[:n], e[n:]
    if isinstance(loss, PairBCELoss):
        value = loss(model.head(e1, e2), batch.same, model=model)
    else:
        value = loss(e1, e2, batch.same)
    return value, 2 * n


def triplets_step(model: nn.Module, loss: nn.Module, batch: Any, ctx: BatchContext) -> tuple[torch.Tensor, int]:
    """``TripletBatch(anchor (B,), positive (B,), negative (B,))`` of indices."""
    n = batch.anchor.shape[0]
    e = ctx.embed(model, torch.cat([batch.anchor, batch.positive, batch.negative]))
    return loss(e[:n], e[n : 2 * n], e[2 * n :]), 3 * n


def labelled_step(model: nn.Module, loss: nn.Module, batch: Any, ctx: BatchContext) -> tuple[torch.Tensor, int]:
    """A class-balanced batch of indices ``(B,)``; the loss mines pairs or triplets in it."""
    idx = batch if isinstance(batch, torch.Tensor) else batch.indices
    e = ctx.embed(model, idx)
    return loss(e, ctx.labels[idx]), int(idx.shape[0])


def episode_step(model: nn.Module, loss: nn.Module, batch: Any, ctx: BatchContext) -> tuple[torch.Tensor, int]:
    """``Episode(support (S,), support_labels (S,), query (Q,), query_labels (Q,))``."""
    s = batch.support.shape[0]
    e = ctx.embed(model, torch.cat([batch.support, batch.query]))
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
