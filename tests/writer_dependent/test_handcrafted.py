"""The dichotomy descriptor's parts: LBP histograms around strokes, ink density per cell,
and the whole 3,130-number descriptor (tests of hog_features are in test_writer_dependent.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twinshot.errors import ConfigError
from twinshot.writer_dependent.handcrafted import (
    descriptor_size,
    hog_features,
    ink_density,
    lbp_features,
    signature_descriptor,
)


def test_lbp_counts_only_around_ink_and_sums_to_one() -> None:
    x = np.zeros((2, 20, 30), np.float32)
    x[0, 5:15, 10:12] = 1.0
    f = lbp_features(x, grid=(2, 2))
    assert f.shape == (2, 2 * 2 * 10) and f.dtype == np.float32
    cells = f.reshape(2, 2, 2, 10)
    np.testing.assert_allclose(cells[0, :, 0].sum(-1), 1.0, atol=1e-5)  # the stroke's cells
    assert cells[0, :, 1].sum() == 0 and f[1].sum() == 0  # blank paper counts nothing
    with pytest.raises(ConfigError, match="does not fit"):
        lbp_features(x, grid=(40, 1))


def test_ink_density_is_the_cell_mean() -> None:
    x = torch.zeros(1, 1, 10, 20)
    x[0, 0, :5, :10] = 1.0
    np.testing.assert_allclose(ink_density(x, (2, 2)), [[1.0, 0.0, 0.0, 0.0]])


def test_descriptor_is_hog_lbp_and_density_side_by_side() -> None:
    x = torch.rand(3, 1, 30, 44)
    d = signature_descriptor(x)
    assert d.shape == (3, descriptor_size()) == (3, 3130)
    np.testing.assert_array_equal(d[:, :150], hog_features(x, (3, 5)))
    np.testing.assert_array_equal(d[:, -150:], ink_density(x, (10, 15)))
    with pytest.raises(ConfigError, match="expects"):
        signature_descriptor(np.zeros((2, 3)))
