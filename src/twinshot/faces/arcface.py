"""The ArcFace (InsightFace) 112x112 five-point face template, and where it lies in dlib's chip.

Face descriptors trained on InsightFace's aligned MS1M images (MobileFaceNet among them)
expect faces warped by the similarity that puts the two eye centres, the nose tip and the
mouth corners on :data:`ARCFACE_112`. From face-api's 68 landmarks those five points are the
means of 36-41 and 42-47, point 30, and points 48 and 54 (:func:`five_points`).

:func:`dlib_chip_to_arcface` is the fixed similarity between dlib's 150x150 chip (the one
``faces`` aligns, :func:`twinshot.faces.align.chip_template`) and the ArcFace frame: the least
squares fit of the same five points of dlib's mean face onto the template, so a chip made
for the dlib ResNet can be re-sampled for an ArcFace-aligned network without the landmarks.
"""

from __future__ import annotations

import numpy as np

from twinshot.faces.align import MEAN_FACE_X, MEAN_FACE_Y, PADDING, similarity_transform

#: Left eye, right eye, nose tip, left and right mouth corners in the 112x112 ArcFace chip
#: (pixel coordinates, centres at integers), as InsightFace's ``arcface_dst``.
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
#: The 68-point landmark indices averaged into each of the five points.
FIVE_FROM_68 = ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47), (30,), (48,), (54,))


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """``(68, 2)`` landmarks -> ``(5, 2)``: eye centres, nose tip, mouth corners."""
    return np.stack([landmarks68[list(idx)].mean(0) for idx in FIVE_FROM_68])


def dlib_chip_five(size: int = 150, padding: float = PADDING) -> np.ndarray:
    """The five points of dlib's mean face in its ``size x size`` chip with ``padding``
    (pixel coordinates, as :func:`twinshot.faces.align.chip_template`), ``(5, 2)``."""
    mean = np.full((68, 2), np.nan)
    mean[17:, 0], mean[17:, 1] = MEAN_FACE_X, MEAN_FACE_Y
    return (padding + five_points(mean)) / (2 * padding + 1) * size


def dlib_chip_to_arcface(size: int = 150, padding: float = PADDING, out: int = 112) -> np.ndarray:
    """The 2x3 similarity mapping ArcFace-chip pixels (an ``out x out`` chip, the template
    scaled by ``out / 112``) to dlib-chip pixels: what :func:`twinshot.faces.align.warp_chip`
    (or a grid sample) needs to cut the ArcFace chip out of dlib's."""
    return similarity_transform(ARCFACE_112 * (out / 112), dlib_chip_five(size, padding))


def arcface_chip_matrix(landmarks68: np.ndarray, out: int = 112) -> np.ndarray:
    """The 2x3 similarity mapping ArcFace-chip pixels to photo pixels, fitted on the five
    points of ``landmarks68`` (photo pixel coordinates, ``(68, 2)``)."""
    return similarity_transform(ARCFACE_112 * (out / 112), five_points(landmarks68))
