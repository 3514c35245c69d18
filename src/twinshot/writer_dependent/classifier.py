"""Writer-dependent classifiers (Hafemann, Sabourin & Oliveira 2017): one binary SVM per
enrolled writer on features of a writer-independent network.

For a writer with ``R`` genuine references, the positives are the references and the
negatives a **cohort**: genuine signatures of other writers (e.g. the writers the network
was trained on, none of them enrolled); no forgery of the enrolled writer is ever needed.
Features are standardised with the cohort's per-dimension mean and spread (the same for
every writer), then an RBF SVM (``C``, ``gamma``; classes weighted by their size) is fitted.
A questioned signature's score is the SVM's decision value: higher is more genuine, one
threshold for all writers.

Needs scikit-learn (the ``eval`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from twinshot.errors import ConfigError, DataError


@dataclass(frozen=True)
class SVMConfig:
    """The writer-dependent SVM: RBF kernel, penalty ``C``, ``gamma`` (``"scale"``:
    ``1 / (F * var)``, scikit-learn's default), classes balanced."""

    C: float = 1.0
    gamma: float | str = "scale"

    def __post_init__(self) -> None:
        if not self.C > 0:
            raise ConfigError(f"SVM C must be > 0, got {self.C}")
        if isinstance(self.gamma, str) and self.gamma not in ("scale", "auto"):
            raise ConfigError(f"SVM gamma must be a positive number, 'scale' or 'auto', got {self.gamma!r}")
        if not isinstance(self.gamma, str) and not self.gamma > 0:
            raise ConfigError(f"SVM gamma must be > 0, got {self.gamma}")


@dataclass(frozen=True)
class Standardiser:
    """Per-dimension ``(x - mean) / std`` with the cohort's statistics; ``(F,)`` each."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, cohort: np.ndarray) -> "Standardiser":
        """From cohort features ``(C, F)``."""
        cohort = np.asarray(cohort, dtype=np.float64)
        if cohort.ndim != 2 or len(cohort) < 2:
            raise DataError(f"the cohort needs at least two feature vectors (C, F), got shape {cohort.shape}")
        return cls(cohort.mean(0), cohort.std(0) + 1e-6)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.std


class WriterClassifier:
    """One writer's SVM: :meth:`fit` on its references vs a cohort, then
    :meth:`decision_function` on questioned signatures."""

    def __init__(self, config: SVMConfig | None = None, standardiser: Standardiser | None = None) -> None:
        self.config = config or SVMConfig()
        self.standardiser = standardiser
        self._svm: Any = None

    def fit(self, references: np.ndarray, cohort: np.ndarray, extra: np.ndarray | None = None) -> "WriterClassifier":
        """Fit on references ``(R, F)`` (positives) and cohort ``(C, F)`` (negatives);
        ``extra`` ``(A, F)``: more positives (e.g. distorted copies of the references).

        Raises:
            DataError: on no references, a cohort of fewer than two, or unequal widths.
        """
        try:
            from sklearn.svm import SVC
        except ImportError:  # pragma: no cover - sklearn is in the eval and test extras
            raise ConfigError("writer-dependent SVMs need scikit-learn: pip install 'twinshot[eval]'") from None
        references = np.atleast_2d(np.asarray(references, dtype=np.float64))
        cohort = np.asarray(cohort, dtype=np.float64)
        if len(references) < 1:
            raise DataError("a writer-dependent classifier needs at least one reference")
        if cohort.ndim != 2 or references.shape[1] != cohort.shape[1]:
            raise DataError(f"references {references.shape} and cohort {cohort.shape} features differ in width")
        if extra is not None and len(extra):
            extra = np.asarray(extra, dtype=np.float64)
            if extra.ndim != 2 or extra.shape[1] != references.shape[1]:
                raise DataError(f"extra positives {extra.shape} and references {references.shape} differ in width")
            references = np.concatenate([references, extra])
        if self.standardiser is None:
            self.standardiser = Standardiser.fit(cohort)
        x = self.standardiser(np.concatenate([references, cohort]))
        y = np.r_[np.ones(len(references)), np.zeros(len(cohort))]
        self._svm = SVC(kernel="rbf", C=self.config.C, gamma=self.config.gamma, class_weight="balanced").fit(x, y)
        return self

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        """Scores ``(Q,)`` of questioned features ``(Q, F)``: higher is more genuine."""
        if self._svm is None or self.standardiser is None:
            raise ConfigError("fit the writer classifier before scoring")
        x = self.standardiser(np.atleast_2d(features))
        return np.asarray(self._svm.decision_function(x), dtype=np.float64)


def writer_scores(
    references: np.ndarray,
    questioned: np.ndarray,
    cohort: np.ndarray,
    config: SVMConfig | None = None,
    extra: np.ndarray | None = None,
) -> np.ndarray:
    """Fit a :class:`WriterClassifier` on ``references`` ``(R, F)`` (and ``extra``
    positives) vs ``cohort`` ``(C, F)`` and score ``questioned`` ``(Q, F)``; returns ``(Q,)``."""
    clf = WriterClassifier(config, Standardiser.fit(cohort)).fit(references, cohort, extra)
    return clf.decision_function(questioned)
