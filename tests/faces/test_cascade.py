"""The landmark cascade: a box rebuilt from the landmarks, and the landmark net run again on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import DATASETS
from twinshot.faces.align import (
    CASCADE_BOX,
    MEAN_FACE_X,
    MEAN_FACE_Y,
    box_in_face,
    cascade_box,
    detect_and_align,
    find_face,
    upright_landmarks,
)

PHOTO = DATASETS / "lfw" / "Colin_Powell" / "Colin_Powell_0001.jpg"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _face(scale: float, angle: float, shift: tuple[float, float]) -> np.ndarray:
    """68 points: dlib's mean face (points 17-67; the jaw at the origin) under a similarity."""
    pts = np.zeros((68, 2))
    pts[17:] = np.c_[MEAN_FACE_X, MEAN_FACE_Y]
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return pts @ (scale * rot).T + shift


def test_the_box_follows_the_face_and_inverts() -> None:
    pts = _face(80.0, 0.0, (30.0, 40.0))
    x, y, w, h = cascade_box(pts, (0.5, 0.6, 1.2, 1.4))
    np.testing.assert_allclose([x + w / 2, y + h / 2, w, h], [30 + 40, 40 + 48, 96, 112], atol=1e-9)
    moved = _face(120.0, 0.2, (-7.0, 15.0))
    box = (10.0, 20.0, 130.0, 150.0)
    np.testing.assert_allclose(cascade_box(moved, tuple(box_in_face(moved, box))), box, atol=1e-9)


def test_a_cascade_pass_moves_the_landmarks_little_and_keeps_the_chip() -> None:
    if not PHOTO.is_file():
        pytest.skip("LFW not found")
    photo = Image.open(PHOTO).convert("RGB")
    once = detect_and_align(photo)
    twice = detect_and_align(photo, cascade=1)
    assert twice.box == once.box and twice.chip.size == (150, 150)
    moved = np.abs(twice.landmarks - once.landmarks).max()
    assert 0.0 < moved < 8.0  # pixels, in a 250x250 photo with a face ~110 px wide
    found = find_face(photo)
    b = found.box
    rebuilt = cascade_box(once.landmarks + found.border, CASCADE_BOX)
    # the fitted mapping gives about the detector's box
    assert np.abs(np.subtract(rebuilt, (b.x, b.y, b.width, b.height))).max() < 0.15 * b.width
    # the same pass on a crop turned with the face: about the same points (the face is upright)
    turned = upright_landmarks(found.rgb, once.landmarks + found.border) - found.border
    assert np.abs(turned - twice.landmarks).max() < 4.0
