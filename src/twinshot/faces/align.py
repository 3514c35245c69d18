"""Face detection + alignment: a camera photo in, the encoder's face chip out.

:func:`align_face` (what :attr:`twinshot.preprocessing.Preprocessing.align` ``= "face-api"``
runs) finds faces with the tiny face detector, keeps the largest, finds its 68 landmarks
(the mean of those found in its box and, mapped back, in the box's mirror image), and
warps the photo to a ``size x size`` chip by the similarity transform (rotation, uniform
scale, translation; least squares) that puts the eye, nose and mouth landmarks on dlib's mean
face, with dlib's padding of 0.25 around it: the chip dlib's ``get_face_chip_details(shape,
150, 0.25)`` gives, on which its ResNet was trained (the face_recognition convention).
Sampling is bilinear. The detector tries input sides 320, 416, 224 and 160 in turn; if none
finds a face, the photo is framed by a grey border of half its size (a tightly cropped face,
as in ORL, leaves the detector no context) and the sides are tried again.

An image with no face raises :class:`NoFaceError` (a :class:`~twinshot.errors.DataError`); with
several, the largest is used and the number found is logged (logger ``twinshot.faces``).
``"face-api-centre"`` keeps the face at the photo's centre instead, as LFW labels its photos:
the sides are tried until one finds a face covering the centre (at the first side that finds
any, a crowded photo may show only a bystander), and the face nearest the centre is used.
:func:`find_face` (detection) and :func:`box_landmarks` are the two steps, for experiments
(``scripts/lfw_align_variants.py``, ``scripts/lfw_cascade.py``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from twinshot.errors import DataError

log = logging.getLogger("twinshot.faces")

#: dlib's mean face (``get_face_chip_details``): x, y of landmarks 17..67 in [0, 1].
MEAN_FACE_X = (
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689,
)
MEAN_FACE_Y = (
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182,
)
#: The landmarks the transform is fitted on: nose, eyes, mouth (no jaw, eyebrows or lower lip).
POINTS = tuple(i for i in range(27, 68) if not (55 <= i <= 59 or 65 <= i <= 67))
#: dlib's padding around the mean face for its ResNet's chips.
PADDING = 0.25
#: The detector's input sides, tried in turn until one finds a face (face-api's default is
#: 416; 320 finds more of the large, centred faces of portraits and door cameras, and is
#: faster), and its score threshold (face-api's default).
DETECTOR_SIZES = (320, 416, 224, 160)
SCORE_THRESHOLD = 0.5
#: Average the landmarks found in the face's box and in its mirror image (LFW pairs_dev:
#: 98.44% instead of 98.33% with the cosine head; docs/applications.md).
MIRROR_LANDMARKS = True
#: The tiny detector's box in units of dlib's mean face (centre x, centre y, width, height;
#: :func:`cascade_box`): the median of :func:`box_in_face` over the 6,147 LFW photos of
#: pairs_dev.txt with a face (no labels used; the two person-disjoint halves give 0.444 /
#: 0.446, 0.585 / 0.584, 1.561 / 1.563, 1.449 / 1.450; ``scripts/lfw_cascade.py``).
CASCADE_BOX = (0.445, 0.585, 1.562, 1.450)


class NoFaceError(DataError):
    """The face detector found no face in an image."""


@dataclass(frozen=True)
class AlignedFace:
    """One aligned face: the chip, the box it came from, its landmarks, how many faces the
    photo held."""

    chip: Image.Image
    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    n_faces: int


_nets: dict[str, object] = {}
_lock = threading.Lock()


def _models():
    """The detector and landmark nets, built once per process (thread-safe)."""
    with _lock:
        if not _nets:
            import torch  # noqa: F401  (the nets are torch modules)

            from twinshot.faces.detector import TinyFaceDetector
            from twinshot.faces.landmarks import FaceLandmarkNet

            _nets["detector"] = TinyFaceDetector()
            _nets["landmarks"] = FaceLandmarkNet()
    return _nets["detector"], _nets["landmarks"]


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity ``dst ~ s R src + t`` (Umeyama 1991) as a 2x3 matrix.

    Args:
        src, dst: ``(N, 2)`` corresponding points, ``N >= 2``.
    """
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1
    rot = u @ fix @ vt
    scale = (sig * np.diag(fix)).sum() / s0.var(0).sum()
    return np.c_[scale * rot, mu_d - scale * rot @ mu_s]


def chip_template(size: int, padding: float = PADDING) -> np.ndarray:
    """Where :data:`POINTS` go in a ``size x size`` chip (pixel coordinates), ``(33, 2)``."""
    pts = np.array([(MEAN_FACE_X[i - 17], MEAN_FACE_Y[i - 17]) for i in POINTS])
    return (padding + pts) / (2 * padding + 1) * size


def warp_chip(image: Image.Image, chip_to_image: np.ndarray, size: int | tuple[int, int]) -> Image.Image:
    """Sample a ``size x size`` (or ``(width, height)``) chip from ``image`` through a 2x3 map
    of chip pixel coordinates to image pixel coordinates (pixel centres at integers), bilinear."""
    a, b, tx = chip_to_image[0]
    d, e, ty = chip_to_image[1]
    # PIL works in continuous coordinates (pixel centres at +0.5)
    c = tx + 0.5 - 0.5 * (a + b)
    f = ty + 0.5 - 0.5 * (d + e)
    out = (size, size) if isinstance(size, int) else tuple(size)
    return image.transform(out, Image.Transform.AFFINE, (a, b, c, d, e, f), Image.Resampling.BILINEAR)


def _covers(box, x: float, y: float) -> bool:
    """Whether the point ``(x, y)`` lies in ``box``."""
    return box.x <= x <= box.x + box.width and box.y <= y <= box.y + box.height


@dataclass(frozen=True)
class FoundFace:
    """The face :func:`find_face` picked: ``box`` in ``rgb`` (the photo, with ``border`` grey
    pixels added on every side when the detector needed context), ``arr`` its pixels
    ``(H, W, 3)`` uint8, and how many faces the chosen detector side found."""

    rgb: Image.Image
    arr: np.ndarray
    box: object  # twinshot.faces.detector.FaceBox
    border: int
    n_faces: int


def find_face(image: Image.Image, *, name: str = "image", pick: str = "largest") -> FoundFace:
    """Run the tiny face detector (sides :data:`DETECTOR_SIZES`, then with a grey border) and
    pick one face (``pick``: see :func:`detect_and_align`).

    Raises:
        NoFaceError: ``"<name>: no face found"`` when the detector finds none.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    detector, _ = _models()
    centre = (rgb.width / 2, rgb.height / 2)  # the same point with the border added
    boxes: list = []
    first: tuple | None = None  # (boxes, rgb, arr, border) of the first side that found any face
    border = 0
    for attempt in range(2):
        if attempt == 1:  # a face filling the whole photo: give the detector some context
            border = max(rgb.size) // 2
            rgb = ImageOps.expand(rgb, border=border, fill=(128, 128, 128))
        arr = np.asarray(rgb, dtype=np.uint8)
        for side in DETECTOR_SIZES:
            boxes = detector.detect(arr, side, SCORE_THRESHOLD)
            if not boxes:
                continue
            if first is None:
                first = (boxes, rgb, arr, border)
            if pick != "centre" or any(_covers(b, centre[0] + border, centre[1] + border) for b in boxes):
                break
            boxes = []  # LFW's face is at the centre: a face elsewhere only, try the next side
        if boxes:
            break
    if not boxes and first is not None:  # no face covers the centre: the nearest one found
        boxes, rgb, arr, border = first
    if not boxes:
        raise NoFaceError(
            f"{name}: no face found (tiny face detector at {'/'.join(map(str, DETECTOR_SIZES))} px, "
            f"also with a border added, score > {SCORE_THRESHOLD})"
        )
    height, width = arr.shape[:2]
    if pick == "centre":
        box = min(boxes, key=lambda b: (b.x + b.width / 2 - width / 2) ** 2 + (b.y + b.height / 2 - height / 2) ** 2)
    else:
        box = max(boxes, key=lambda b: b.area)
    if len(boxes) > 1:
        log.warning("%s: %d faces found; using the %s", name, len(boxes), "one nearest the centre" if pick == "centre" else "largest")
    return FoundFace(rgb, arr, box, border, len(boxes))


def box_landmarks(arr: np.ndarray, box: tuple[float, float, float, float], *, name: str = "image") -> np.ndarray:
    """face-api's 68 landmarks ``(68, 2)`` (pixels of ``arr``) of the face in ``box``
    ``(x, y, width, height)``: the box clipped at the image borders and floored, as face-api
    crops it; averaged with its mirror image when :data:`MIRROR_LANDMARKS`."""
    _, marker = _models()
    height, width = arr.shape[:2]
    bx, by, bw, bh = box
    x0, y0 = max(bx, 0.0), max(by, 0.0)
    x1, y1 = min(bx + bw, float(width)), min(by + bh, float(height))
    left, top, w, h = int(np.floor(x0)), int(np.floor(y0)), int(np.floor(x1 - x0)), int(np.floor(y1 - y0))
    if w < 8 or h < 8:
        raise DataError(f"{name}: the face found is too small ({w}x{h} pixels)")
    return marker.landmarks(arr[top : top + h, left : left + w], mirror=MIRROR_LANDMARKS) + (left, top)


def face_frame(points: np.ndarray) -> np.ndarray:
    """The similarity (2x3) from dlib's mean face (unit square, no padding) to the face of the
    68 ``points``, fitted on :data:`POINTS` as the chip is."""
    return similarity_transform(chip_template(1, 0.0), points[list(POINTS)])


def cascade_box(points: np.ndarray, box_in_face: tuple[float, float, float, float] = CASCADE_BOX) -> tuple[float, float, float, float]:
    """The box ``(x, y, width, height)`` the detector would give, on average, for the face of
    68 ``points``: ``box_in_face`` (centre x, centre y, width, height in units of dlib's mean
    face) placed by :func:`face_frame`'s translation and scale (the box stays upright)."""
    frame = face_frame(points)
    scale = float(np.sqrt(abs(np.linalg.det(frame[:, :2]))))
    cx, cy = frame[:, :2] @ np.array(box_in_face[:2]) + frame[:, 2]
    w, h = scale * box_in_face[2], scale * box_in_face[3]
    return (cx - w / 2, cy - h / 2, w, h)


def box_in_face(points: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The inverse of :func:`cascade_box`: an upright ``box`` ``(x, y, width, height)`` in the
    frame of the face of 68 ``points``, as ``(centre x, centre y, width, height)`` in units
    of dlib's mean face (what :data:`CASCADE_BOX` holds, fitted over many photos)."""
    frame = face_frame(points)
    scale = float(np.sqrt(abs(np.linalg.det(frame[:, :2]))))
    centre = np.array([box[0] + box[2] / 2, box[1] + box[3] / 2])
    c = np.linalg.solve(frame[:, :2], centre - frame[:, 2])
    return np.array([c[0], c[1], box[2] / scale, box[3] / scale])


def upright_landmarks(rgb: Image.Image, points: np.ndarray, box_in_face: tuple[float, float, float, float] = CASCADE_BOX) -> np.ndarray:
    """A cascade pass on an upright crop: :func:`cascade_box`'s box turned with the face (so
    the eyes are level in the crop the landmark net sees), sampled bilinearly from ``rgb``;
    the 68 points found (mirror-averaged as :func:`box_landmarks`) mapped back to ``rgb``."""
    _, marker = _models()
    frame = face_frame(points)
    scale = float(np.sqrt(abs(np.linalg.det(frame[:, :2]))))
    rot = frame[:, :2] / scale
    centre = frame[:, :2] @ np.array(box_in_face[:2]) + frame[:, 2]  # pixel-edge coordinates
    w, h = max(8, round(scale * box_in_face[2])), max(8, round(scale * box_in_face[3]))
    crop_centre = np.array([w / 2 - 0.5, h / 2 - 0.5])  # pixel-centre coordinates
    to_image = np.c_[rot, centre - 0.5 - rot @ crop_centre]
    crop = np.asarray(warp_chip(rgb, to_image, (w, h)), dtype=np.uint8)
    found = marker.landmarks(crop, mirror=MIRROR_LANDMARKS) - 0.5
    return found @ rot.T + to_image[:, 2] + 0.5


def detect_and_align(
    image: Image.Image, size: int = 150, *, name: str = "image", pick: str = "largest", cascade: int = 0
) -> AlignedFace:
    """Detect a face in ``image`` and align it to a ``size x size`` chip.

    Args:
        pick: with several faces, ``"largest"`` (a door camera: the person in front) or
            ``"centre"`` (LFW's labelled face, the one at the photo's centre: the detector
            sides are tried until one finds a face covering the centre, the nearest to the
            centre of them is used; if no side does, the face nearest the centre of the
            first side that found any).
        cascade: after the landmarks of the detector's box, this many more passes of the
            landmark net, each on the box :func:`cascade_box` builds from the previous
            pass's landmarks (the detector's box, de-noised). 0 in every shipped model: on
            LFW it did not help (docs/applications.md, "a landmark cascade").

    Raises:
        DataError: ``"<name>: no face found"`` when the detector finds none.
    """
    found = find_face(image, name=name, pick=pick)
    box, border = found.box, found.border
    points = box_landmarks(found.arr, (box.x, box.y, box.width, box.height), name=name)
    for _ in range(cascade):
        try:
            points = box_landmarks(found.arr, cascade_box(points), name=name)
        except DataError:  # the rebuilt box left the photo: keep the last landmarks
            break
    transform = similarity_transform(chip_template(size), points[list(POINTS)])
    chip = warp_chip(found.rgb, transform, size)
    # box and landmarks in the caller's photo (without the border)
    return AlignedFace(chip, (box.x - border, box.y - border, box.width, box.height), points - border, found.n_faces)


def align_face(image: Image.Image, method: str, size: tuple[int, int], *, name: str = "image") -> Image.Image:
    """The hook of :func:`twinshot.preprocessing.decode_image_array`: the aligned RGB chip."""
    picks = {"face-api": "largest", "face-api-centre": "centre"}
    if method not in picks:
        raise DataError(f"unknown face aligner {method!r}; valid: {', '.join(picks)}")
    if size[0] != size[1]:
        raise DataError(f"face alignment makes square chips; preprocessing size is {size[0]}x{size[1]}")
    return detect_and_align(image, size[0], name=name, pick=picks[method]).chip
