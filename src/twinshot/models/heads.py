"""Heads: turn two embeddings into the logit of "same class".

Every head gives, for embeddings ``e1, e2`` of shape ``(B, D)``:

* ``similarity(e1, e2) -> (B,)``: a raw score, **higher is more alike** (for distance
  heads, the negated distance);
* ``forward(e1, e2) -> (B,)``: the logit ``scale * similarity + bias`` (or Koch's
  weighted L1 logit); ``sigmoid(logit)`` is the probability the pair shows one class;
* ``pairwise_similarity(a, b) -> (Q, N)`` and ``pairwise_logits(a, b)`` for every pair of
  rows, computed with one matrix product where the head allows it (gallery search).

The logistic parameters ``scale`` and ``bias`` are **learned** when the network is trained
with :class:`twinshot.losses.PairBCELoss`; with contrastive or triplet losses they do not
take part in training and are **calibrated** afterwards (Platt scaling on validation
pairs, see ``Head.set_logistic``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from twinshot.registry import Registry


class Head(nn.Module):
    """Base class of the comparison heads. Subclasses define ``similarity`` and
    ``pairwise_similarity``; the logistic ``scale * s + bias`` is shared."""

    def __init__(self, scale: float = 1.0, bias: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.bias = nn.Parameter(torch.tensor(float(bias)))

    def similarity(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pairwise_similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        """Logits ``(B,)`` that the pairs show the same class."""
        return self.scale * self.similarity(e1, e2) + self.bias

    def pairwise_logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Logits ``(Q, N)`` for every row of ``a (Q, D)`` against every row of ``b (N, D)``."""
        return self.scale * self.pairwise_similarity(a, b) + self.bias

    def set_logistic(self, scale: float, bias: float) -> None:
        """Set the logistic that maps similarity to probability (after calibration)."""
        with torch.no_grad():
            self.scale.fill_(float(scale))
            self.bias.fill_(float(bias))


HEADS: Registry[Head] = Registry("head")


@HEADS.register("euclidean")
class EuclideanHead(Head):
    """Euclidean distance, as in the seed article: ``s = -||e1 - e2||_2`` (higher is closer).
    Probability ``sigmoid(scale * s + bias)``; the defaults map distance 0 to sigmoid(1) = 0.73 and
    are meant to be learned or calibrated."""

    def __init__(self, embedding_dim: int | None = None, scale: float = 1.0, bias: float = 1.0) -> None:
        super().__init__(scale, bias)

    def similarity(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        return -torch.sqrt(((e1 - e2) ** 2).sum(dim=1) + 1e-12)

    def pairwise_similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``-|a_i - b_j|`` ``(Q, N)`` from exact differences (``torch.cdist`` without its
        matrix-product shortcut). The expanded form ``|a|^2 - 2 a.b + |b|^2`` cancels for
        near-identical embeddings: in float32 its error on the squared distance is about
        ``1e-7 (|a|^2 + |b|^2)``, so a distance of 0 came out as up to ``3e-4 |a|`` and the
        result depended on the CPU's matrix kernels. Half-precision inputs are scored in
        float32 (``cdist`` has no bfloat16 kernel)."""
        dtype = torch.promote_types(torch.result_type(a, b), torch.float32)
        d = torch.cdist(a.to(dtype), b.to(dtype), compute_mode="donot_use_mm_for_euclid_dist")
        return -torch.sqrt(d * d + 1e-12)


@HEADS.register("cosine")
class CosineHead(Head):
    """Cosine similarity ``s = e1 . e2 / (|e1| |e2|)`` in [-1, 1] (higher is closer);
    probability ``sigmoid(scale * s + bias)``."""

    def __init__(self, embedding_dim: int | None = None, scale: float = 10.0, bias: float = -5.0) -> None:
        super().__init__(scale, bias)

    def similarity(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(e1, e2, dim=1, eps=1e-8)

    def pairwise_similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.normalize(a, dim=1, eps=1e-8) @ F.normalize(b, dim=1, eps=1e-8).T


@HEADS.register("weighted_l1")
class WeightedL1Head(Head):
    """Koch et al.'s head: ``logit = sum_j alpha_j |e1_j - e2_j| + beta``, probability
    ``sigmoid(logit)``. ``alpha`` (D,) and ``beta`` are learned with binary cross-entropy.
    ``similarity`` is the logit itself (higher is more alike); ``scale``/``bias`` start at
    1 and 0 and are only changed by calibration."""

    def __init__(self, embedding_dim: int = 4096, chunk_size: int = 1024) -> None:
        super().__init__(1.0, 0.0)
        self.alpha = nn.Parameter(torch.empty(embedding_dim))
        self.beta = nn.Parameter(torch.zeros(()))
        self.chunk_size = chunk_size
        nn.init.normal_(self.alpha, 0.0, 0.2)

    def similarity(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        return (e1 - e2).abs() @ self.alpha + self.beta

    def pairwise_similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # No matrix-product form: evaluate in chunks of queries to bound memory.
        rows = []
        step = max(1, self.chunk_size * 64 // max(1, b.shape[0]))
        for i in range(0, a.shape[0], step):
            diff = (a[i : i + step, None, :] - b[None, :, :]).abs()
            rows.append(diff @ self.alpha + self.beta)
        return torch.cat(rows, 0) if rows else a.new_zeros((0, b.shape[0]))
