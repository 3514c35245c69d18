"""The comparison heads in numpy, for scoring pairs without torch.

:class:`NumpyHead` is built from the ``"head"`` entry of an export's JSON sidecar (see
:func:`twinshot.export.exporter.head_to_dict`) and computes the same numbers as the torch
heads of :mod:`twinshot.models.heads` (to float32 rounding):

* ``similarity(e1, e2) -> (B,)``: **higher is more alike** (negated distance for
  ``euclidean``; cosine similarity for ``cosine``; Koch's weighted L1 logit for
  ``weighted_l1``);
* ``logits(e1, e2) -> (B,)``: ``scale * similarity + bias``; ``sigmoid(logit)`` is the
  probability that the pair shows one class;
* ``pairwise_similarity(a, b)`` and ``pairwise_logits(a, b) -> (Q, N)`` for every row of
  ``a (Q, D)`` against every row of ``b (N, D)``.

Imports numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from twinshot.errors import ConfigError

#: Heads that can be scored without torch.
NUMPY_HEADS = ("cosine", "euclidean", "weighted_l1")

#: Most float32 values of one block of pair differences of the weighted L1 head (16 MB).
_BLOCK = 4 * 1024 * 1024


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, elementwise."""
    x = np.asarray(logits, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def _rows(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise ConfigError(f"{name} must be embeddings (B, D), got shape {arr.shape}")
    return arr


def _normalize(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    norms = np.sqrt(np.einsum("nd,nd->n", x, x))
    return x / np.maximum(norms, np.float32(eps))[:, None]


#: Pairs whose expanded squared distance is below this fraction of ``|a|^2 + |b|^2`` are
#: recomputed from exact differences (float64 rounding of the expansion is ~1e-14 of it, so
#: beyond the bound the distance is off by under ~1e-8 of itself).
_RESCORE_BELOW = 1e-6


def _pairwise_sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distances float64 ``(Q, N)`` of float32 ``a (Q, D)`` and ``b (N, D)``, with no
    cancellation: the expansion ``|a|^2 - 2 a.b + |b|^2`` in float64 (its absolute error is
    about ``1e-15 (|a|^2 + |b|^2)``), then the near-identical pairs, where that error would
    dominate, recomputed from exact differences. In float32 the expansion alone put a
    distance of 0 at up to ``3e-4 |a|``."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    na, nb = np.einsum("qd,qd->q", a64, a64), np.einsum("nd,nd->n", b64, b64)
    sq = np.maximum(na[:, None] - 2.0 * (a64 @ b64.T) + nb[None, :], 0.0)
    qi, nj = np.nonzero(sq <= _RESCORE_BELOW * (na[:, None] + nb[None, :]))
    step = max(1, _BLOCK // max(1, a.shape[1]))
    for s in range(0, qi.size, step):
        i, j = qi[s : s + step], nj[s : s + step]
        d = a64[i] - b64[j]
        sq[i, j] = np.einsum("pd,pd->p", d, d)
    return sq


@dataclass(frozen=True)
class NumpyHead:
    """A comparison head in numpy.

    Attributes:
        name: ``"cosine"``, ``"euclidean"`` or ``"weighted_l1"``.
        scale, bias: the logistic ``logit = scale * similarity + bias``.
        alpha: ``(D,)`` weights of Koch's weighted L1 head (``weighted_l1`` only).
        beta: the offset of Koch's weighted L1 head (``weighted_l1`` only).
    """

    name: str
    scale: float = 1.0
    bias: float = 0.0
    alpha: np.ndarray | None = None
    beta: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in NUMPY_HEADS:
            raise ConfigError(f"head {self.name!r} cannot be scored without torch; valid: {', '.join(NUMPY_HEADS)}")
        if self.name == "weighted_l1":
            if self.alpha is None:
                raise ConfigError("the weighted_l1 head needs its alpha weights")
            object.__setattr__(self, "alpha", np.asarray(self.alpha, dtype=np.float32).reshape(-1))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NumpyHead:
        """From the sidecar's ``"head"`` object: ``{"name", "scale", "bias"}`` plus
        ``"alpha"`` (a list of D floats) and ``"beta"`` for ``weighted_l1``."""
        try:
            return cls(
                name=str(d["name"]),
                scale=float(d.get("scale", 1.0)),
                bias=float(d.get("bias", 0.0)),
                alpha=None if d.get("alpha") is None else np.asarray(d["alpha"], dtype=np.float32),
                beta=float(d.get("beta", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a valid head description ({exc.__class__.__name__}: {exc})") from None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "scale": self.scale, "bias": self.bias}
        if self.name == "weighted_l1":
            d["alpha"] = [float(v) for v in self.alpha]  # type: ignore[union-attr]
            d["beta"] = self.beta
        return d

    def similarity(self, e1: Any, e2: Any) -> np.ndarray:
        """Raw scores ``(B,)`` of row-aligned pairs, higher is more alike."""
        a, b = _rows(e1, "e1"), _rows(e2, "e2")
        if a.shape != b.shape:
            raise ConfigError(f"embeddings of shapes {a.shape} and {b.shape} cannot be paired row by row")
        if self.name == "euclidean":
            d = a - b
            return -np.sqrt(np.einsum("nd,nd->n", d, d) + np.float32(1e-12))
        if self.name == "cosine":
            return np.einsum("nd,nd->n", _normalize(a), _normalize(b))
        return np.abs(a - b) @ self.alpha + np.float32(self.beta)  # type: ignore[operator]

    def pairwise_similarity(self, a: Any, b: Any) -> np.ndarray:
        """Raw scores ``(Q, N)`` of every row of ``a (Q, D)`` against every row of ``b (N, D)``."""
        a, b = _rows(a, "a"), _rows(b, "b")
        if a.shape[1] != b.shape[1]:
            raise ConfigError(f"embeddings of dimensions {a.shape[1]} and {b.shape[1]} cannot be compared")
        if self.name == "euclidean":
            return (-np.sqrt(_pairwise_sq_distances(a, b) + 1e-12)).astype(np.float32)
        if self.name == "cosine":
            return _normalize(a) @ _normalize(b).T
        # No matrix-product form: blocks of (rows, cols, D) differences of at most _BLOCK values.
        out = np.empty((a.shape[0], b.shape[0]), np.float32)
        dim = max(1, a.shape[1])
        cols = max(1, min(b.shape[0], _BLOCK // dim))
        rows = max(1, _BLOCK // (dim * cols))
        for i in range(0, a.shape[0], rows):
            for j in range(0, b.shape[0], cols):
                diff = np.abs(a[i : i + rows, None, :] - b[None, j : j + cols, :])
                out[i : i + rows, j : j + cols] = diff @ self.alpha + np.float32(self.beta)  # type: ignore[operator]
        return out

    def logits(self, e1: Any, e2: Any) -> np.ndarray:
        """Logits ``(B,)`` that row-aligned pairs show the same class."""
        return (np.float32(self.scale) * self.similarity(e1, e2) + np.float32(self.bias)).astype(np.float32)

    def pairwise_logits(self, a: Any, b: Any) -> np.ndarray:
        """Logits ``(Q, N)`` for every row of ``a (Q, D)`` against every row of ``b (N, D)``."""
        return (np.float32(self.scale) * self.pairwise_similarity(a, b) + np.float32(self.bias)).astype(np.float32)


def pairwise_logits(a: Any, b: Any, head: NumpyHead | dict[str, Any]) -> np.ndarray:
    """Logits ``(Q, N)`` of ``head`` (a :class:`NumpyHead` or its sidecar dict) for every
    row of ``a (Q, D)`` against every row of ``b (N, D)``; higher is more alike."""
    h = head if isinstance(head, NumpyHead) else NumpyHead.from_dict(head)
    return h.pairwise_logits(a, b)
