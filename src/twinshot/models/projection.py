"""Closed-form linear projections of embeddings learned from labelled data: within-class
covariance normalisation (WCCN) and linear discriminant analysis (LDA), as in speaker and face
verification. Both are fixed linear maps ``(x - mean) @ matrix`` compared by cosine afterwards.

Scatters are class-averaged, so a class with hundreds of samples weighs as much as one with
two: the within-class scatter ``Sw = mean_c cov_c`` over classes with >= 2 samples (``cov_c``
with ``1 / n_c``), the between-class scatter ``Sb = mean_c (m_c - m)(m_c - m)^T`` over every
class (``m``: the mean of the class means). ``reg`` is scale-free: ``Sw + reg * tr(Sw) / D * I``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twinshot.errors import ConfigError, DataError


@dataclass(frozen=True)
class LinearProjection:
    """``project(x) = (x - mean) @ matrix``: ``mean (D,)``, ``matrix (D, d)``."""

    mean: np.ndarray
    matrix: np.ndarray

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """``(N, D)`` -> ``(N, d)`` (not normalised)."""
        return (np.asarray(embeddings, dtype=np.float64) - self.mean) @ self.matrix


def class_scatters(embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Sw, Sb)``, each ``(D, D)``, class-averaged (see the module docstring).

    Raises:
        DataError: if no class has two samples (no within-class scatter) or shapes disagree.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (len(x),):
        raise DataError(f"embeddings must be (N, D) and labels (N,), got {x.shape} and {labels.shape}")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    c, d = len(counts), x.shape[1]
    sums = np.zeros((c, d))
    np.add.at(sums, inverse, x)
    means = sums / counts[:, None]
    multi = counts >= 2
    if not multi.any():
        raise DataError("within-class scatter needs a class with two or more samples; every class has one")
    keep = multi[inverse]
    centred = (x - means[inverse])[keep]
    weights = 1.0 / (counts[inverse][keep] * multi.sum())
    sw = (centred * weights[:, None]).T @ centred
    between = means - means.mean(0)
    sb = between.T @ between / c
    return sw, sb


def _regularised(sw: np.ndarray, reg: float) -> np.ndarray:
    if reg < 0:
        raise ConfigError(f"reg must be >= 0, got {reg}")
    return sw + reg * np.trace(sw) / len(sw) * np.eye(len(sw))


def _inverse_sqrt(s: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(s)
    if values.min() <= 0:
        raise DataError(f"the regularised within-class scatter is singular (smallest eigenvalue {values.min():.3g}); raise reg")
    return (vectors / np.sqrt(values)) @ vectors.T


def wccn(embeddings: np.ndarray, labels: np.ndarray, *, reg: float = 0.1, centre: bool = False) -> LinearProjection:
    """Whitening by the regularised within-class scatter: ``matrix = (Sw + reg tr(Sw)/D I)^(-1/2)``
    (symmetric, ``(D, D)``); ``mean`` is the samples' mean with ``centre``, else zero."""
    x = np.asarray(embeddings, dtype=np.float64)
    sw, _ = class_scatters(x, labels)
    mean = x.mean(0) if centre else np.zeros(x.shape[1])
    return LinearProjection(mean, _inverse_sqrt(_regularised(sw, reg)))


def lda(embeddings: np.ndarray, labels: np.ndarray, *, dim: int, reg: float = 0.1, centre: bool = False) -> LinearProjection:
    """The top ``dim`` discriminant directions of ``Sb`` against ``Sw + reg tr(Sw)/D I``, scaled so
    that the regularised within-class scatter becomes the identity: ``matrix (D, dim)`` with
    ``matrix.T @ Sw_reg @ matrix = I``, columns by decreasing ratio. With ``dim = D`` cosines
    equal :func:`wccn`'s."""
    x = np.asarray(embeddings, dtype=np.float64)
    if not 1 <= dim <= x.shape[1]:
        raise ConfigError(f"dim must be in 1..{x.shape[1]}, got {dim}")
    sw, sb = class_scatters(x, labels)
    white = _inverse_sqrt(_regularised(sw, reg))
    values, vectors = np.linalg.eigh(white @ sb @ white)
    top = vectors[:, np.argsort(values)[::-1][:dim]]
    mean = x.mean(0) if centre else np.zeros(x.shape[1])
    return LinearProjection(mean, white @ top)
