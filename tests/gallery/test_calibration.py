"""Thresholds against scikit-learn's ROC, Platt and isotonic against scikit-learn, expected
calibration error before and after, bootstrap intervals against a direct resampling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from twinshot.errors import ConfigError, DataError
from twinshot.evaluation import metrics
from twinshot.gallery.calibration import (
    Calibration,
    CalibrationReport,
    bootstrap_rates,
    calibrate_scores,
    expected_calibration_error,
    fit_isotonic,
    fit_platt,
    fit_threshold,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def _pairs(n: int = 4000, seed: int = 0, shift: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Genuine scores N(shift, 1), impostor N(0, 1): overlapping, with a few ties."""
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.4
    scores = np.where(same, rng.normal(shift, 1.0, n), rng.normal(0.0, 1.0, n))
    return np.round(scores, 3), same


def _miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose true probability is sigmoid(2.5 * s - 1.0): sigmoid(s) is badly calibrated."""
    rng = np.random.default_rng(seed)
    s = rng.normal(0.0, 1.5, n)
    p = 1.0 / (1.0 + np.exp(-(2.5 * s - 1.0)))
    return s, rng.random(n) < p


@pytest.mark.parametrize("far", [0.0, 0.001, 0.01, 0.1, 0.35])
def test_threshold_at_far_matches_sklearn_roc(far: float) -> None:
    scores, same = _pairs()
    t = fit_threshold(scores, same, far=far)
    fpr, tpr, thresholds = sklearn_metrics.roc_curve(same, scores, drop_intermediate=False)
    expected = thresholds[np.nonzero(fpr <= far)[0][-1]]
    assert t == pytest.approx(expected)
    got_far, _ = metrics.rates_at_threshold(scores, same, t)
    assert got_far <= far
    # the next lower distinct score would exceed the target
    lower = np.max(scores[scores < t]) if np.any(scores < t) else None
    if lower is not None:
        assert metrics.rates_at_threshold(scores, same, lower)[0] > far


def test_threshold_at_eer_matches_a_brute_force_search() -> None:
    scores, same = _pairs(seed=1)
    t = fit_threshold(scores, same, eer=True)
    fpr, tpr, thresholds = sklearn_metrics.roc_curve(same, scores)
    i = np.argmin(np.abs(fpr - (1 - tpr)))
    assert abs(t - thresholds[i]) < 0.05
    far, frr = metrics.rates_at_threshold(scores, same, t)
    assert abs(far - frr) < 0.01


def test_platt_matches_unpenalised_logistic_regression() -> None:
    from sklearn.linear_model import LogisticRegression

    s, y = _miscalibrated(3000, 0)
    cal = fit_platt(s, y, smooth=False)
    lr = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(s[:, None], y)
    assert cal.a == pytest.approx(lr.coef_[0, 0], rel=1e-4)
    assert cal.b == pytest.approx(lr.intercept_[0], rel=1e-4, abs=1e-5)
    np.testing.assert_allclose(cal.probability(s), lr.predict_proba(s[:, None])[:, 1], atol=1e-5)
    # Platt's smoothed targets stay finite on perfectly separated scores
    sep = fit_platt(np.r_[np.zeros(10), np.ones(10)], np.r_[np.zeros(10, bool), np.ones(10, bool)])
    assert np.isfinite(sep.a) and sep.a > 0


def test_isotonic_matches_sklearn() -> None:
    from sklearn.isotonic import IsotonicRegression

    s, y = _miscalibrated(2000, 1)
    s = np.round(s, 2)  # ties
    cal = fit_isotonic(s, y)
    ref = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(s, y.astype(float))
    grid = np.linspace(s.min() - 1, s.max() + 1, 997)
    np.testing.assert_allclose(cal.probability(grid), ref.predict(grid), atol=1e-9)
    assert np.all(np.diff(cal.probability(grid)) >= 0)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_lowers_expected_calibration_error_on_held_out_pairs(method: str) -> None:
    s_fit, y_fit = _miscalibrated(6000, 2)
    s_test, y_test = _miscalibrated(6000, 3)
    report = calibrate_scores(s_fit, y_fit, eer=True, method=method, n_boot=50)
    before = expected_calibration_error(1 / (1 + np.exp(-s_test)), y_test)
    after = expected_calibration_error(report.calibration.probability(s_test), y_test)
    assert before > 0.1
    assert after < 0.03, after
    assert report.ece_after < report.ece_before


def test_expected_calibration_error_by_hand() -> None:
    p = np.array([0.05, 0.15, 0.95, 0.85])
    y = np.array([False, True, True, True])
    # 15 bins: 0.05 -> bin 0, 0.15 -> bin 2, 0.85 -> bin 12, 0.95 -> bin 14; one item each
    expected = (0.05 + 0.85 + 0.05 + 0.15) / 4
    assert expected_calibration_error(p, y) == pytest.approx(expected)


def test_bootstrap_intervals_agree_with_direct_resampling() -> None:
    scores, same = _pairs(n=2000, seed=4)
    t = fit_threshold(scores, same, far=0.05)
    (far_lo, far_hi), (frr_lo, frr_hi) = bootstrap_rates(scores, same, t, n_boot=4000, seed=0)
    far, frr = metrics.rates_at_threshold(scores, same, t)
    assert far_lo <= far <= far_hi and frr_lo <= frr <= frr_hi
    rng = np.random.default_rng(0)
    imp, gen = scores[~same], scores[same]
    boot_far = [np.mean(rng.choice(imp, imp.size) >= t) for _ in range(2000)]
    boot_frr = [np.mean(rng.choice(gen, gen.size) < t) for _ in range(2000)]
    assert far_lo == pytest.approx(np.percentile(boot_far, 2.5), abs=0.004)
    assert far_hi == pytest.approx(np.percentile(boot_far, 97.5), abs=0.004)
    assert frr_lo == pytest.approx(np.percentile(boot_frr, 2.5), abs=0.006)
    assert frr_hi == pytest.approx(np.percentile(boot_frr, 97.5), abs=0.006)
    # seeded: the same seed gives the same intervals
    assert bootstrap_rates(scores, same, t, n_boot=100, seed=3) == bootstrap_rates(scores, same, t, n_boot=100, seed=3)


def test_report_round_trips_through_json() -> None:
    scores, same = _pairs(n=500)
    report = calibrate_scores(scores, same, far=0.01, method="isotonic", n_boot=20, source="unit")
    back = CalibrationReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert back == report
    assert report.target == "far=0.01" and report.far <= 0.01
    assert Calibration.from_dict(report.calibration.to_dict()) == report.calibration


def test_bad_inputs_are_refused() -> None:
    scores, same = _pairs(n=100)
    with pytest.raises(ConfigError, match="exactly one"):
        fit_threshold(scores, same, far=0.1, eer=True)
    with pytest.raises(ConfigError, match="exactly one"):
        fit_threshold(scores, same)
    with pytest.raises(DataError, match="genuine and impostor"):
        calibrate_scores(scores[same], same[same], eer=True)
    with pytest.raises(ConfigError, match="unknown calibration method"):
        calibrate_scores(scores, same, eer=True, method="magic")
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        fit_threshold(scores, same, far=1.5)
    assert Calibration().probability(-np.inf) == 0.0


@pytest.mark.parametrize("errors,n", [(0, 2000), (2, 2000), (5, 100), (100, 100), (37, 12480), (1, 1), (0, 1)])
def test_exact_interval_matches_scipy_clopper_pearson(errors: int, n: int) -> None:
    from scipy.stats import beta

    from twinshot.gallery.calibration import exact_interval

    lo, hi = exact_interval(errors, n)
    want_lo = 0.0 if errors == 0 else beta.ppf(0.025, errors, n - errors + 1)
    want_hi = 1.0 if errors == n else beta.ppf(0.975, errors + 1, n - errors)
    assert lo == pytest.approx(want_lo, abs=1e-9) and hi == pytest.approx(want_hi, abs=1e-9)
    with pytest.raises(ConfigError):
        exact_interval(n + 1, n)


def test_no_observed_false_accept_still_gets_an_upper_bound() -> None:
    """A target below 1 / n (FAR 1e-4 from 2,000 impostor pairs) leaves no false accept: the
    bootstrap interval is [0, 0], the exact one [0, 3.7 / n]."""
    from twinshot.gallery.calibration import calibrate_scores

    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(3, 1, 500), rng.normal(-3, 1, 2000)])
    same = np.concatenate([np.ones(500, bool), np.zeros(2000, bool)])
    report = calibrate_scores(scores, same, far=1e-4, n_boot=200)
    assert report.far == 0.0 and report.far_ci95 == (0.0, 0.0)
    assert report.far_exact95[0] == 0.0 and report.far_exact95[1] == pytest.approx(0.00184, abs=1e-5)
    again = type(report).from_dict(json.loads(json.dumps(report.to_dict())))
    assert again.far_exact95 == pytest.approx(report.far_exact95)


def test_folder_pairs_with_one_image_per_class_name_the_folder(tmp_path) -> None:
    # a newcomer's folder of one image per class has no genuine pair: say so, naming the folder
    from tests.conftest import make_image_folder
    from tests.gallery.helpers import tiny_model
    from twinshot.gallery.calibration import folder_pair_scores

    folder = make_image_folder(tmp_path / "single", groups=1, classes_per_group=4, per_class=1, nested=False)
    with pytest.raises(DataError, match="single: calibration needs classes with at least 2 images .* each of its 4 classes has 1"):
        folder_pair_scores(tiny_model(), folder, n_pairs=10)
