"""``fit_logistic`` (Platt scaling) against scikit-learn's logistic regression (issue 11:
a negated scale went unnoticed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twinshot.errors import DataError
from twinshot.training.calibrate import fit_logistic

sklearn_linear = pytest.importorskip("sklearn.linear_model")


def _pairs(scale: float, bias: float, n: int, seed: int, loc: float = 0.0, spread: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = loc + spread * rng.standard_normal(n)
    same = rng.random(n) < 1.0 / (1.0 + np.exp(-(scale * scores + bias)))
    return scores, same


@pytest.mark.parametrize(
    "scale,bias,loc,spread",
    [(2.5, -1.0, 0.0, 1.0), (0.7, 3.0, -4.0, 2.0), (-1.5, 0.5, 0.0, 1.0), (40.0, -30.0, 0.8, 0.05)],
)
def test_fit_logistic_matches_scikit_learn(scale: float, bias: float, loc: float, spread: float) -> None:
    scores, same = _pairs(scale, bias, 4000, seed=int(abs(scale) * 10), loc=loc, spread=spread)
    ref = sklearn_linear.LogisticRegression(C=1e12, tol=1e-12, max_iter=10_000).fit(scores[:, None], same)
    got_scale, got_bias = fit_logistic(torch.tensor(scores, dtype=torch.float32), torch.tensor(same))
    assert got_scale == pytest.approx(float(ref.coef_[0, 0]), rel=2e-3, abs=1e-4)
    assert got_bias == pytest.approx(float(ref.intercept_[0]), rel=2e-3, abs=1e-3)
    assert np.sign(got_scale) == np.sign(scale)  # higher scores are "same" exactly when the data say so
    assert got_scale == pytest.approx(scale, rel=0.25)  # and near the truth the pairs were drawn from


def test_fit_logistic_needs_both_kinds_of_pairs() -> None:
    with pytest.raises(DataError, match="both same-class and different-class pairs"):
        fit_logistic(torch.randn(10), torch.ones(10, dtype=torch.bool))
    with pytest.raises(DataError, match="must be a bool tensor"):
        fit_logistic(torch.randn(10), torch.ones(10))
