"""The verification metrics against scikit-learn, on random and heavily tied scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from twinshot.errors import DataError
from twinshot.evaluation import metrics


def _cases(n_cases: int = 60):
    """Random score sets: continuous, then few distinct values (many ties)."""
    rng = np.random.default_rng(0)
    out = []
    for k in range(n_cases):
        n = int(rng.integers(4, 80))
        same = rng.random(n) < rng.uniform(0.2, 0.8)
        same[0], same[1] = True, False
        if k % 2:
            scores = rng.integers(0, 4, n).astype(float)  # ties everywhere
        else:
            scores = rng.normal(size=n) + same * rng.uniform(0, 2)
        out.append((scores, same))
    return out


CASES = _cases()


def _sk_eer(scores: np.ndarray, same: np.ndarray) -> float:
    """EER from scikit-learn's ROC points: FAR where FAR - FRR crosses 0, linearly interpolated."""
    fpr, tpr, _ = sk_roc_curve(same, scores, drop_intermediate=False)
    diff = fpr - (1 - tpr)
    i = int(np.argmax(diff >= 0))
    if diff[i] == 0 or i == 0:
        return float(fpr[i])
    t = -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


@pytest.mark.parametrize("k", range(len(CASES)))
def test_roc_auc_match_sklearn(k: int) -> None:
    scores, same = CASES[k]
    roc = metrics.roc_curve(scores, same)
    fpr, tpr, thresholds = sk_roc_curve(same, scores, drop_intermediate=False)
    np.testing.assert_allclose(roc.far, fpr)
    np.testing.assert_allclose(roc.tar, tpr)
    assert np.isinf(roc.thresholds[0])
    np.testing.assert_allclose(roc.thresholds[1:], thresholds[1:])
    assert metrics.auc(scores, same) == pytest.approx(roc_auc_score(same, scores), abs=1e-12)


@pytest.mark.parametrize("k", range(len(CASES)))
def test_eer_and_tar_at_far_match_sklearn(k: int) -> None:
    scores, same = CASES[k]
    eer, threshold = metrics.equal_error_rate(scores, same)
    assert eer == pytest.approx(_sk_eer(scores, same), abs=1e-12)
    assert 0.0 <= eer <= 1.0
    assert np.isfinite(threshold)
    fpr, tpr, thr = sk_roc_curve(same, scores, drop_intermediate=False)
    for far in (0.0, 1e-3, 1e-2, 0.1, 0.3, 1.0):
        ok = fpr <= far
        assert metrics.tar_at_far(scores, same, far) == pytest.approx(tpr[ok].max())
        # the threshold realises a FAR within the limit
        t = metrics.threshold_at_far(scores, same, far)
        far_t, _ = metrics.rates_at_threshold(scores, same, t) if np.isfinite(t) else (0.0, 0.0)
        assert far_t <= far + 1e-12


def test_eer_hand_computed() -> None:
    # genuine 0.9, 0.8, 0.3; impostor 0.7, 0.2, 0.1 -> at threshold 0.7: FAR 1/3, FRR 1/3.
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1])
    same = np.array([True, True, True, False, False, False])
    eer, threshold = metrics.equal_error_rate(scores, same)
    assert eer == pytest.approx(1 / 3)
    far, frr = metrics.rates_at_threshold(scores, same, threshold)
    assert far == pytest.approx(1 / 3) and frr == pytest.approx(1 / 3)
    assert metrics.auc(scores, same) == pytest.approx(8 / 9)


def test_perfect_separation() -> None:
    scores = np.array([3.0, 2.0, 1.0, 0.0])
    same = np.array([True, True, False, False])
    assert metrics.auc(scores, same) == 1.0
    assert metrics.equal_error_rate(scores, same)[0] == 0.0
    assert metrics.tar_at_far(scores, same, 0.0) == 1.0


def test_bad_inputs() -> None:
    with pytest.raises(DataError, match="boolean"):
        metrics.auc(np.zeros(3), np.array([1, 0, 1]))
    with pytest.raises(DataError, match="both genuine"):
        metrics.auc(np.zeros(3), np.ones(3, bool))
    with pytest.raises(DataError, match="NaN"):
        metrics.auc(np.array([np.nan, 1.0]), np.array([True, False]))
    with pytest.raises(DataError, match="length"):
        metrics.auc(np.zeros(3), np.array([True, False]))


def test_mean_ci95() -> None:
    values = np.array([0.5, 0.6, 0.7, 0.8])
    mean, half = metrics.mean_ci95(values)
    assert mean == pytest.approx(0.65)
    assert half == pytest.approx(1.96 * np.std(values, ddof=1) / 2)
    assert np.isnan(metrics.mean_ci95(np.array([1.0]))[1])
