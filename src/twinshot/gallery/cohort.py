"""Cohort score normalisation: make scores comparable across identities and queries.

A *cohort* is a set of impostor embeddings (people or classes that are neither enrolled
nor queried, e.g. from the calibration data). A raw score ``s(q, r)`` of query ``q``
against reference ``r`` is normalised with the statistics of each side's scores against
the cohort (as in speaker and face verification; Auckenthaler et al. 2000, Matejka et al.
2017 for AS-norm):

* ``"znorm"``: ``(s - mu_r) / sd_r``, the reference's cohort scores (fixed per reference);
* ``"tnorm"``: ``(s - mu_q) / sd_q``, the query's cohort scores (shifts a query's scores
  together: ranking unchanged, only the threshold sees it);
* ``"snorm"``: the mean of the two;
* ``"asnorm"``: ``snorm`` with each side's statistics over its ``top_k`` highest cohort
  scores only (adaptive: the impostors most like it);
* ``"none"``: the raw score.

Scores stay higher-is-more-alike; normalised scores are in standard deviations, not logits,
so a threshold fitted on raw scores does not apply to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from twinshot.errors import ConfigError, DataError

NORMS = ("none", "znorm", "tnorm", "snorm", "asnorm")
DEFAULT_TOP_K = 100

#: ``pairwise(a (Q, D), b (N, D)) -> (Q, N)`` logits, higher is more alike.
Pairwise = Callable[[np.ndarray, np.ndarray], np.ndarray]


def cohort_stats(scores: np.ndarray, top_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation ``(A,)``, ``(A,)`` of each row of cohort scores ``(A, K)``,
    over the ``top_k`` highest of the row when given (all ``K`` otherwise)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] < 2:
        raise DataError(f"cohort statistics need at least 2 cohort scores per row, got shape {s.shape}")
    if top_k is not None and top_k < s.shape[1]:
        if top_k < 2:
            raise ConfigError(f"top_k must be >= 2, got {top_k}")
        s = -np.partition(-s, top_k - 1, axis=1)[:, :top_k]
    return s.mean(1), np.maximum(s.std(1), 1e-6)


@dataclass(frozen=True)
class CohortNorm:
    """A score normalisation with its cohort.

    Attributes:
        method: one of :data:`NORMS`.
        cohort: float32 ``(K, D)`` impostor embeddings.
        top_k: for ``"asnorm"``, the cohort scores kept per side.
    """

    method: str
    cohort: np.ndarray
    top_k: int = DEFAULT_TOP_K

    def __post_init__(self) -> None:
        if self.method not in NORMS:
            raise ConfigError(f"unknown score normalisation {self.method!r}; valid: {', '.join(NORMS)}")
        if self.method != "none" and (np.ndim(self.cohort) != 2 or len(self.cohort) < 2):
            raise DataError(f"score normalisation needs a cohort of at least 2 embeddings, got shape {np.shape(self.cohort)}")

    def stats(self, embeddings: np.ndarray, pairwise: Pairwise) -> tuple[np.ndarray, np.ndarray]:
        """Cohort mean and deviation of each embedding ``(A, D)``: ``(A,)``, ``(A,)``."""
        k = self.top_k if self.method == "asnorm" else None
        return cohort_stats(pairwise(np.asarray(embeddings, np.float32), self.cohort), k)

    def apply(self, scores: np.ndarray, queries: np.ndarray, references: np.ndarray, pairwise: Pairwise) -> np.ndarray:
        """Normalise raw scores ``(Q, N)`` of ``queries (Q, D)`` against ``references (N, D)``."""
        s = np.asarray(scores, dtype=np.float64)
        if self.method == "none":
            return s
        out = np.zeros_like(s)
        parts = 0
        if self.method in ("znorm", "snorm", "asnorm"):
            mu, sd = self.stats(references, pairwise)
            out += (s - mu[None]) / sd[None]
            parts += 1
        if self.method in ("tnorm", "snorm", "asnorm"):
            mu, sd = self.stats(queries, pairwise)
            out += (s - mu[:, None]) / sd[:, None]
            parts += 1
        return out / parts

    def transform(self, pairwise: Pairwise) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
        """``(scores, queries, references) -> normalised scores``, for
        :func:`twinshot.evaluation.openset.evaluate_open_set_embeddings`."""
        return lambda s, q, r: self.apply(s, q, r, pairwise)


def sample_cohort(embeddings: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """At most ``size`` rows of ``embeddings`` drawn without replacement (seeded), float32."""
    e = np.asarray(embeddings, dtype=np.float32)
    if size < 2:
        raise ConfigError(f"cohort size must be >= 2, got {size}")
    if len(e) <= size:
        return e.copy()
    idx = np.sort(np.random.default_rng(seed).choice(len(e), size, replace=False))
    return e[idx]
