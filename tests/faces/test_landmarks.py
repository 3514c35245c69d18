"""face-api's landmark net with mirror averaging: a mirrored crop gives the mirrored points."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import DATASETS
from twinshot.faces.landmarks import FLIP68, FaceLandmarkNet

PHOTO = DATASETS / "lfw" / "Colin_Powell" / "Colin_Powell_0001.jpg"


def test_flip68_is_an_involution_that_swaps_the_eyes() -> None:
    flip = np.array(FLIP68)
    assert sorted(FLIP68) == list(range(68)) and (flip[flip] == np.arange(68)).all()
    assert flip[36] == 45 and flip[39] == 42 and flip[48] == 54 and flip[30] == 30 and flip[8] == 8


def test_mirror_averaged_landmarks_are_symmetric_and_close_to_one_pass() -> None:
    if not PHOTO.is_file():
        pytest.skip("LFW not found")
    crop = np.asarray(Image.open(PHOTO).convert("RGB"))[60:190, 65:185]  # the face, 130x120
    net = FaceLandmarkNet()
    one = net.landmarks(crop)
    both = net.landmarks(crop, mirror=True)
    assert both.shape == (68, 2) and np.abs(both - one).max() < 6.0  # pixels of a 120-px face
    mirrored = net.landmarks(np.ascontiguousarray(crop[:, ::-1]), mirror=True)
    expect = both[list(FLIP68)].copy()
    expect[:, 0] = crop.shape[1] - expect[:, 0]
    np.testing.assert_allclose(mirrored, expect, atol=1e-3)
