"""Distances between embeddings, **smaller is closer**, as the losses use them.

Each distance gives

* ``paired(a, b) -> (B,)``: the distance between ``a[i]`` and ``b[i]`` for ``a, b (B, D)``;
* ``pairwise(a, b) -> (N, M)``: every row of ``a (N, D)`` against every row of ``b (M, D)``
  (one matrix product);
* ``pairwise_similarity(a, b) -> (N, M)``: a score, **higher is closer** (``-distance``, or
  the cosine itself for :class:`CosineDistance`), used as logits.

Euclidean distances use a square root whose gradient at exactly 0 is taken as 0 (not
NaN), so identical embeddings never poison training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from twinshot.registry import Registry


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` for ``x >= 0`` with gradient 0 (instead of inf/NaN) where ``x == 0``."""
    positive = x > 0
    return torch.where(positive, x.clamp_min(torch.finfo(x.dtype).tiny).sqrt(), torch.zeros_like(x))


def squared_norms_pairwise(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a_i - b_j||^2`` as ``(N, M)`` from one matrix product, clamped at 0."""
    sq = (a * a).sum(1, keepdim=True) - 2.0 * (a @ b.T) + (b * b).sum(1)[None, :]
    return sq.clamp_min(0.0)


class Distance:
    """A distance between embeddings; smaller is closer."""

    name: str = ""

    def paired(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``(B, D), (B, D) -> (B,)``."""
        raise NotImplementedError

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``(N, D), (M, D) -> (N, M)``."""
        raise NotImplementedError

    def pairwise_similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``(N, D), (M, D) -> (N, M)``, higher is closer: ``-pairwise(a, b)``."""
        return -self.pairwise(a, b)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


DISTANCES: Registry[Distance] = Registry("distance")


@DISTANCES.register("euclidean")
class EuclideanDistance(Distance):
    """``||a - b||_2``."""

    name = "euclidean"

    def paired(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return safe_sqrt(((a - b) ** 2).sum(1))

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return safe_sqrt(squared_norms_pairwise(a, b))


@DISTANCES.register("squared_euclidean")
class SquaredEuclideanDistance(Distance):
    """``||a - b||_2^2`` (Snell et al.'s choice for prototypical networks)."""

    name = "squared_euclidean"

    def paired(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a - b) ** 2).sum(1)

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return squared_norms_pairwise(a, b)


@DISTANCES.register("cosine")
class CosineDistance(Distance):
    """``1 - cos(a, b)`` in [0, 2]; ``pairwise_similarity`` is ``cos(a, b)`` in [-1, 1]."""

    name = "cosine"

    def paired(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 1.0 - F.cosine_similarity(a, b, dim=1, eps=1e-8)

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 1.0 - self.pairwise_similarity(a, b)

    def pairwise_similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.normalize(a, dim=1, eps=1e-8) @ F.normalize(b, dim=1, eps=1e-8).T
