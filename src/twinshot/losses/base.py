"""The base class of every loss: the batch kind it needs and input validation, done once.

Every loss is an :class:`torch.nn.Module` whose ``forward`` returns a scalar tensor
(``()``) connected to the inputs' graph, also when no pair or triplet contributes (then
the value is 0 and the gradients are zeros, never ``None``).

``batch_kind`` tells the trainer what batches a loss consumes:

* ``"pairs"``: two index-aligned embedding (or logit) batches and ``same (B,)`` bool;
* ``"labelled"``: a class-balanced batch ``embeddings (B, D)``, ``labels (B,)`` (online mining);
* ``"triplets"``: explicit ``anchor``, ``positive``, ``negative`` batches ``(B, D)``;
* ``"episode"``: a few-shot episode ``support``, ``support_labels``, ``query``, ``query_labels``.

User mistakes (a float ``same``, mismatched shapes) raise :class:`twinshot.errors.DataError`
with one line naming the argument.
"""

from __future__ import annotations

from abc import ABC
from typing import Any, ClassVar

import torch
from torch import nn

from twinshot.errors import DataError
from twinshot.registry import Registry

BATCH_KINDS: tuple[str, ...] = ("pairs", "labelled", "triplets", "episode")


class Loss(nn.Module, ABC):
    """Base of the twinshot losses: holds ``batch_kind`` and the shared input checks."""

    #: What batches the loss needs; one of :data:`BATCH_KINDS`.
    batch_kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("batch_kind")
        if kind is not None and kind not in BATCH_KINDS:
            raise TypeError(f"{cls.__name__}.batch_kind {kind!r} is not one of {BATCH_KINDS}")

    # -- input checks, shared by every loss ------------------------------------------------

    @staticmethod
    def _tensor(name: str, x: object) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise DataError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}")
        return x

    @classmethod
    def check_embeddings(cls, name: str, x: object, dim: int | None = None) -> torch.Tensor:
        """``x`` must be a non-empty floating tensor ``(B, D)`` (``D == dim`` when given)."""
        x = cls._tensor(name, x)
        if x.ndim != 2:
            raise DataError(f"`{name}` must have shape (B, D), got {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise DataError(f"`{name}` is empty (B = 0)")
        if not x.is_floating_point():
            raise DataError(f"`{name}` must be a floating tensor, got {x.dtype}")
        if dim is not None and x.shape[1] != dim:
            raise DataError(f"`{name}` has dimension {x.shape[1]}, expected {dim}")
        return x

    @classmethod
    def check_same_shape(cls, **tensors: torch.Tensor) -> None:
        """All named tensors must have one shape."""
        shapes = {name: tuple(t.shape) for name, t in tensors.items()}
        if len(set(shapes.values())) > 1:
            listed = ", ".join(f"{n} {s}" for n, s in shapes.items())
            raise DataError(f"shapes differ: {listed}")

    @classmethod
    def check_same(cls, same: object, n: int, name: str = "same") -> torch.Tensor:
        """``same`` must be a bool tensor ``(n,)``. Numbers are refused on purpose: papers
        disagree on whether 1 means "same" or "different"; a boolean cannot be misread."""
        same = cls._tensor(name, same)
        if same.dtype != torch.bool:
            raise DataError(
                f"`{name}` must be a bool tensor (True = same class), got {same.dtype}; "
                f"pass e.g. `labels1 == labels2`, not 0/1 numbers"
            )
        if tuple(same.shape) != (n,):
            raise DataError(f"`{name}` must have shape ({n},), got {tuple(same.shape)}")
        return same

    @classmethod
    def check_labels(cls, labels: object, n: int, name: str = "labels") -> torch.Tensor:
        """``labels`` must be an integer (not bool) tensor ``(n,)`` of class ids."""
        labels = cls._tensor(name, labels)
        if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
            raise DataError(f"`{name}` must be an integer tensor of class ids, got {labels.dtype}")
        if tuple(labels.shape) != (n,):
            raise DataError(f"`{name}` must have shape ({n},), got {tuple(labels.shape)}")
        return labels

    @staticmethod
    def zero_like_graph(*tensors: torch.Tensor) -> torch.Tensor:
        """A scalar 0 that depends on ``tensors`` (so ``backward`` gives zero gradients)."""
        return sum((t.sum() * 0.0 for t in tensors), torch.zeros((), device=tensors[0].device, dtype=tensors[0].dtype))


#: Losses by name, for configs and the CLI: ``LOSSES.build("triplet", margin=0.3)``.
LOSSES: Registry[Loss] = Registry("loss")
