"""Verification metrics from scores: ROC, AUC, EER, TAR at FAR, confidence intervals.

Scores follow the project's convention: **higher is more alike**; a pair is accepted
as "same" when ``score >= threshold``. ``same`` is a boolean array (True: genuine pair).
Pure numpy, checked against scikit-learn in the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from twinshot.errors import DataError


def _check(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    same = np.asarray(same)
    if same.dtype != np.bool_:
        raise DataError("`same` must be boolean (True: the pair shows one class)")
    same = same.ravel()
    if scores.shape != same.shape:
        raise DataError(f"scores and same differ in length ({scores.size} vs {same.size})")
    if not same.any() or same.all():
        raise DataError("need both genuine (same=True) and impostor (same=False) pairs")
    if not np.all(np.isfinite(scores)):
        raise DataError("scores contain NaN or infinite values")
    return scores, same


@dataclass(frozen=True)
class RocCurve:
    """``far[i]``, ``tar[i]``: false/true accept rates when accepting ``score >= thresholds[i]``.
    Thresholds decrease; the first point is (0, 0) at threshold +inf."""

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray


def roc_curve(scores: np.ndarray, same: np.ndarray) -> RocCurve:
    """The ROC curve at every distinct score (same points as ``sklearn.metrics.roc_curve``
    with ``drop_intermediate=False``)."""
    scores, same = _check(scores, same)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], same[order]
    distinct = np.nonzero(np.diff(s))[0]
    ends = np.r_[distinct, y.size - 1]
    tps = np.cumsum(y)[ends]
    fps = (ends + 1) - tps
    tar = np.r_[0.0, tps / y.sum()]
    far = np.r_[0.0, fps / (~y).sum()]
    thresholds = np.r_[np.inf, s[ends]]
    return RocCurve(far=far, tar=tar, thresholds=thresholds)


def auc(scores: np.ndarray, same: np.ndarray) -> float:
    """Area under the ROC curve (trapezoidal, ties handled as scikit-learn does)."""
    roc = roc_curve(scores, same)
    return float(np.trapezoid(roc.tar, roc.far))


def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """``(eer, threshold)``: the rate where FAR equals FRR (= 1 - TAR), interpolated linearly
    between the two ROC points that bracket it, and the score threshold there."""
    roc = roc_curve(scores, same)
    frr = 1.0 - roc.tar
    diff = roc.far - frr  # increases from -1 to +1 along the curve
    i = int(np.searchsorted(diff, 0.0))
    if i == 0:
        return 0.0, float(roc.thresholds[1])
    d0, d1 = diff[i - 1], diff[i]
    t = 0.0 if d1 == d0 else -d0 / (d1 - d0)
    eer = roc.far[i - 1] + t * (roc.far[i] - roc.far[i - 1])
    thr = roc.thresholds[i] if np.isinf(roc.thresholds[i - 1]) else roc.thresholds[i - 1] + t * (roc.thresholds[i] - roc.thresholds[i - 1])
    return float(eer), float(thr)


def threshold_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    """The lowest threshold whose false accept rate is at most ``far`` (accept ``score >= t``)."""
    roc = roc_curve(scores, same)
    ok = np.nonzero(roc.far <= far)[0]
    return float(roc.thresholds[ok[-1]])


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    """True accept rate at the lowest threshold whose FAR is at most ``far``."""
    roc = roc_curve(scores, same)
    ok = np.nonzero(roc.far <= far)[0]
    return float(roc.tar[ok[-1]])


def rates_at_threshold(scores: np.ndarray, same: np.ndarray, threshold: float) -> tuple[float, float]:
    """``(far, frr)`` when accepting ``score >= threshold``."""
    scores, same = _check(scores, same)
    accept = scores >= threshold
    return float(accept[~same].mean()), float((~accept[same]).mean())


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of its normal 95% confidence interval (1.96 standard errors)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise DataError("no values to average")
    half = 1.96 * v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else float("nan")
    return float(v.mean()), float(half)
