import numpy as np
import pytest

from twinshot.errors import ConfigError, DataError
from twinshot.models.projection import class_scatters, lda, wccn


def _clusters(seed: int = 0, classes: int = 12, dim: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3
    spread = np.diag(np.linspace(0.2, 2.0, dim))  # anisotropic within-class noise
    counts = rng.integers(1, 9, size=classes)
    counts[0] = 1  # a singleton: in Sb, not in Sw
    x = np.concatenate([centres[c] + rng.normal(size=(n, dim)) @ spread for c, n in enumerate(counts)])
    labels = np.repeat(np.arange(classes), counts)
    return x, labels


def _direct_scatters(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    covs, means = [], []
    for c in np.unique(labels):
        xc = x[labels == c]
        means.append(xc.mean(0))
        if len(xc) >= 2:
            covs.append(np.cov(xc, rowvar=False, bias=True))
    sw = np.mean(covs, axis=0)
    means = np.array(means)
    sb = np.cov(means, rowvar=False, bias=True)
    return sw, sb


def test_class_scatters_match_a_direct_computation():
    x, labels = _clusters()
    sw, sb = class_scatters(x, labels)
    ref_sw, ref_sb = _direct_scatters(x, labels)
    np.testing.assert_allclose(sw, ref_sw, atol=1e-10)
    np.testing.assert_allclose(sb, ref_sb, atol=1e-10)


@pytest.mark.parametrize("reg", [0.0, 0.1, 1.0])
def test_wccn_whitens_the_regularised_within_class_scatter(reg):
    x, labels = _clusters(1)
    proj = wccn(x, labels, reg=reg)
    ref_sw, _ = _direct_scatters(x, labels)
    s = ref_sw + reg * np.trace(ref_sw) / len(ref_sw) * np.eye(len(ref_sw))
    w = proj.matrix
    np.testing.assert_allclose(w, w.T, atol=1e-10)
    np.testing.assert_allclose(w.T @ s @ w, np.eye(len(s)), atol=1e-8)
    np.testing.assert_allclose(proj.mean, 0.0)


def test_centre_subtracts_the_sample_mean():
    x, labels = _clusters(2)
    proj = wccn(x, labels, reg=0.1, centre=True)
    np.testing.assert_allclose(proj.mean, x.mean(0))
    np.testing.assert_allclose(proj.project(x).mean(0), 0.0, atol=1e-10)


def test_lda_is_a_generalised_eigenbasis_and_full_rank_matches_wccn_cosines():
    x, labels = _clusters(3)
    reg, dim = 0.05, 3
    proj = lda(x, labels, dim=dim, reg=reg)
    sw, sb = _direct_scatters(x, labels)
    s = sw + reg * np.trace(sw) / len(sw) * np.eye(len(sw))
    v = proj.matrix
    assert v.shape == (x.shape[1], dim)
    np.testing.assert_allclose(v.T @ s @ v, np.eye(dim), atol=1e-8)
    ratios = np.diag(v.T @ sb @ v)
    assert np.all(np.diff(ratios) <= 1e-12)  # decreasing
    # generalised eigenvalues from scipy-free reference: eig(s^-1 sb)
    ref = np.sort(np.linalg.eigvals(np.linalg.solve(s, sb)).real)[::-1][:dim]
    np.testing.assert_allclose(ratios, ref, rtol=1e-6)

    def cos(a):
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        return a @ a.T

    full = lda(x, labels, dim=x.shape[1], reg=reg)
    np.testing.assert_allclose(cos(full.project(x)), cos(wccn(x, labels, reg=reg).project(x)), atol=1e-8)


def test_errors_name_the_problem():
    x, labels = _clusters()
    with pytest.raises(DataError, match="two or more samples"):
        wccn(x[:3], np.arange(3))
    with pytest.raises(ConfigError, match="dim"):
        lda(x, labels, dim=0)
    with pytest.raises(ConfigError, match="reg"):
        wccn(x, labels, reg=-1)
    with pytest.raises(DataError, match="labels"):
        class_scatters(x, labels[:-1])
