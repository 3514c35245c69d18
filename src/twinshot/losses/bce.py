"""Koch et al.'s binary cross-entropy on the head's "same class" probability."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from twinshot.errors import ConfigError, DataError
from twinshot.losses.base import LOSSES, Loss

_NORM_LAYERS: tuple[type[nn.Module], ...] = tuple(
    getattr(nn, name)
    for name in (
        "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "InstanceNorm1d", "InstanceNorm2d",
        "InstanceNorm3d", "LayerNorm", "GroupNorm", "RMSNorm",
    )
    if hasattr(nn, name)
)


def regularised_weights(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """The parameters the L2 term covers: every parameter with at least one dimension
    whose name does not end in ``bias`` and that is not a normalisation layer's affine
    parameter. So conv and linear weights and Koch's head weights ``alpha`` are included;
    biases, batch-norm scales and scalar parameters (a head's logistic ``scale``/``bias``,
    Koch's ``beta``) are not."""
    norm_prefixes = {name for name, m in model.named_modules() if isinstance(m, _NORM_LAYERS)}
    for name, param in model.named_parameters():
        owner, _, leaf = name.rpartition(".")
        if param.ndim == 0 or leaf.endswith("bias") or owner in norm_prefixes:
            continue
        yield name, param


def _matches(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


@LOSSES.register("bce")
class PairBCELoss(Loss):
    """Binary cross-entropy on pair logits, with optional per-layer L2 (Koch et al. 2015)::

        p_i = sigmoid(logits_i)
        L   = mean_i -[same_i log p_i + (1 - same_i) log(1 - p_i)]  +  sum_j l2_j ||W_j||^2

    computed with ``binary_cross_entropy_with_logits`` (numerically stable; equal to BCE on
    ``sigmoid(logits)``). ``W_j`` ranges over :func:`regularised_weights` of ``model``
    (weights, not biases or normalisation parameters); the term is the plain sum of
    squares, no 1/2 factor.

    Args:
        l2: a float applies that coefficient to every weight; a dict maps parameter-name
            prefixes (as in ``model.named_parameters()``, matched on whole dotted
            components, e.g. ``"encoder.features.0"``) to coefficients, so each layer can
            be regularised separately as Koch did. Where prefixes overlap the longest
            wins; weights matched by no prefix are not regularised; a prefix that matches
            no weight is an error.

    Call: ``loss(logits (B,), same (B,) bool, model: nn.Module | None = None) -> ()``;
    ``model`` is required when ``l2`` is non-zero.
    """

    batch_kind = "pairs"

    def __init__(self, l2: float | dict[str, float] = 0.0) -> None:
        super().__init__()
        if isinstance(l2, Mapping):
            coeffs = {str(k): float(v) for k, v in l2.items()}
        elif isinstance(l2, (int, float)) and not isinstance(l2, bool):
            coeffs = {"": float(l2)} if l2 else {}
        else:
            raise ConfigError(f"l2 must be a number or a dict of prefix -> number, got {type(l2).__name__}")
        for prefix, c in coeffs.items():
            if not (math.isfinite(c) and c >= 0):
                raise ConfigError(f"l2 coefficient for {prefix or 'all weights'!r} must be finite and >= 0, got {c}")
        self.l2: dict[str, float] = coeffs

    def regularisation(self, model: nn.Module) -> torch.Tensor:
        """``sum_j l2_j ||W_j||^2`` over ``model``'s weights -> ``()``."""
        prefixes = sorted(self.l2, key=len, reverse=True)
        used: set[str] = set()
        total: torch.Tensor | None = None
        for name, param in regularised_weights(model):
            matching = [p for p in prefixes if _matches(name, p)]
            if not matching:
                continue
            used.update(matching)
            prefix = matching[0]  # the longest
            if self.l2[prefix] == 0.0:
                continue
            term = self.l2[prefix] * param.pow(2).sum()
            total = term if total is None else total + term
        unused = sorted(set(self.l2) - used)
        if unused:
            raise ConfigError(
                f"l2 prefix(es) {', '.join(map(repr, unused))} match no weight of the model; "
                f"weights: {', '.join(n for n, _ in regularised_weights(model))}"
            )
        if total is None:
            p = next(model.parameters(), None)
            return torch.zeros(()) if p is None else p.new_zeros(())
        return total

    def forward(self, logits: torch.Tensor, same: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
        logits = self._tensor("logits", logits)
        if logits.ndim != 1 or not logits.is_floating_point():
            raise DataError(f"`logits` must be a floating tensor of shape (B,), got {logits.dtype} {tuple(logits.shape)}")
        if logits.shape[0] == 0:
            raise DataError("`logits` is empty (B = 0)")
        same = self.check_same(same, logits.shape[0])
        loss = F.binary_cross_entropy_with_logits(logits, same.to(logits.dtype))
        if self.l2:
            if model is None:
                raise ConfigError("PairBCELoss with l2 regularisation needs the model: loss(logits, same, model)")
            loss = loss + self.regularisation(model).to(loss.dtype)
        return loss

    def extra_repr(self) -> str:
        return f"l2={self.l2}"
