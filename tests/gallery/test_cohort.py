"""Cohort score normalisation: Z-, T-, S- and AS-norm on hand-checked scores."""

from __future__ import annotations

import numpy as np
import pytest

from twinshot.errors import ConfigError, DataError
from twinshot.gallery.cohort import CohortNorm, cohort_stats, sample_cohort


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float64) @ np.asarray(b, np.float64).T


def test_cohort_stats_all_and_top_k() -> None:
    s = np.array([[1.0, 3.0, 5.0, 7.0]])
    mu, sd = cohort_stats(s)
    assert mu.tolist() == [4.0] and sd[0] == pytest.approx(np.sqrt(5.0))
    mu2, sd2 = cohort_stats(s, top_k=2)  # the two highest: 5 and 7
    assert mu2.tolist() == [6.0] and sd2.tolist() == [1.0]
    with pytest.raises(DataError, match="at least 2"):
        cohort_stats(np.array([[1.0]]))


def test_norms_hand_checked() -> None:
    # 1-d embeddings scored by product: the cohort {1, 3} gives x's cohort scores {x, 3x}
    cohort = np.array([[1.0], [3.0]], np.float32)
    q = np.array([[1.0], [2.0]], np.float32)  # cohort scores {1, 3} (mean 2, sd 1) and {2, 6} (mean 4, sd 2)
    r = np.array([[0.5]], np.float32)  # cohort scores {0.5, 1.5}: mean 1, sd 0.5
    s = dot(q, r)  # 0.5 and 1.0
    z = CohortNorm("znorm", cohort).apply(s, q, r, dot)
    t = CohortNorm("tnorm", cohort).apply(s, q, r, dot)
    np.testing.assert_allclose(z, [[(0.5 - 1) / 0.5], [(1.0 - 1) / 0.5]])
    np.testing.assert_allclose(t, [[(0.5 - 2) / 1], [(1.0 - 4) / 2]])
    np.testing.assert_allclose(CohortNorm("snorm", cohort).apply(s, q, r, dot), (z + t) / 2)
    # AS-norm with top-2 of a 2-member cohort is S-norm; "none" leaves scores alone
    np.testing.assert_allclose(CohortNorm("asnorm", cohort, top_k=2).apply(s, q, r, dot), (z + t) / 2)
    np.testing.assert_array_equal(CohortNorm("none", cohort).apply(s, q, r, dot), s)
    f = CohortNorm("tnorm", cohort).transform(dot)
    np.testing.assert_allclose(f(s, q, r), t)


def test_tnorm_keeps_each_querys_ranking() -> None:
    rng = np.random.default_rng(0)
    cohort, q, r = rng.normal(size=(20, 4)), rng.normal(size=(5, 4)), rng.normal(size=(7, 4))
    s = dot(q, r)
    t = CohortNorm("tnorm", cohort.astype(np.float32)).apply(s, q, r, dot)
    assert (np.argsort(t, 1) == np.argsort(s, 1)).all()


def test_errors_and_sampling() -> None:
    with pytest.raises(ConfigError, match="normalisation"):
        CohortNorm("lnorm", np.zeros((3, 2), np.float32))
    with pytest.raises(DataError, match="cohort"):
        CohortNorm("znorm", np.zeros((1, 2), np.float32))
    e = np.arange(20, dtype=np.float32).reshape(10, 2)
    assert sample_cohort(e, 20).shape == (10, 2)
    s = sample_cohort(e, 4, seed=3)
    assert s.shape == (4, 2) and (sample_cohort(e, 4, seed=3) == s).all()
    with pytest.raises(ConfigError, match="cohort size"):
        sample_cohort(e, 1)
