"""Decoding every PIL mode to the right grey levels, and refusing images with no content or
absurd shapes (issue 11, defect 2: 16-bit images once decoded as blank and matched)."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from twinshot.data import Preprocessing, load_image
from twinshot.errors import DataError
from twinshot.preprocessing import MAX_ASPECT_RATIO, UnusableImageError, decode_image_array


def _base(h: int = 60, w: int = 50) -> np.ndarray:
    """An 8-bit grey picture with content: a gradient, a dark bar and a bright block."""
    img = np.tile(np.linspace(40, 220, w), (h, 1)).astype(np.uint8)
    img[10:50, 20:28] = 5
    img[5:15, 5:45] = 250
    return img


BASE = _base()


def _encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _pgm16(a16: np.ndarray) -> bytes:
    h, w = a16.shape
    return f"P5\n{w} {h}\n65535\n".encode() + a16.astype(">u2").tobytes()


#: label -> the encoded bytes (or array) of BASE in that mode; each decodes to BASE itself.
SAME_AS_8BIT: dict[str, Callable[[], object]] = {
    "L png": lambda: _encode(Image.fromarray(BASE)),
    "I;16 png": lambda: _encode(Image.fromarray(BASE.astype(np.uint16) * 257)),
    "I;16 tiff": lambda: _encode(Image.fromarray(BASE.astype(np.uint16) * 257), "TIFF"),
    "I;16B raw": lambda: Image.frombytes("I;16B", (50, 60), (BASE.astype(">u2") * 257).tobytes()),
    "I 16-bit pgm": lambda: _pgm16(BASE.astype(np.uint16) * 257),
    "I int32 tiff": lambda: _encode(Image.fromarray(BASE.astype(np.int32) * 257), "TIFF"),
    "F tiff 0-1": lambda: _encode(Image.fromarray(BASE.astype(np.float32) / 255), "TIFF"),
    "F tiff 0-255": lambda: _encode(Image.fromarray(np.maximum(BASE, 2).astype(np.float32)), "TIFF"),
    "F tiff 0-65535": lambda: _encode(Image.fromarray(BASE.astype(np.float32) * 257), "TIFF"),
    "P png": lambda: _encode(Image.fromarray(BASE).convert("P")),
    "RGB png": lambda: _encode(Image.fromarray(BASE).convert("RGB")),
    "RGBA opaque png": lambda: _encode(Image.fromarray(BASE).convert("RGBA")),
    "LA opaque png": lambda: _encode(Image.fromarray(BASE).convert("LA")),
    "CMYK tiff": lambda: _encode(Image.fromarray(BASE).convert("RGB").convert("CMYK"), "TIFF"),
    "YCbCr tiff": lambda: _encode(Image.fromarray(BASE).convert("RGB").convert("YCbCr"), "TIFF"),
    "uint16 array": lambda: BASE.astype(np.uint16) * 257,
    "float array 0-1": lambda: BASE / 255.0,
    "int64 array 0-255": lambda: BASE.astype(np.int64),
    "int32 array 0-65535": lambda: BASE.astype(np.int32) * 257,
}


@pytest.mark.parametrize("label", sorted(SAME_AS_8BIT))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_mode_decodes_to_its_8bit_grey_levels(label: str, channels: int) -> None:
    p = Preprocessing(size=(60, 50), channels=channels)
    expected = decode_image_array(BASE, p).astype(int)
    got = decode_image_array(SAME_AS_8BIT[label](), p).astype(int)
    if label == "F tiff 0-255":
        expected = decode_image_array(np.maximum(BASE, 2), p).astype(int)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1, label  # quantisation at most


def test_a_16bit_face_gives_the_model_input_of_its_8bit_version(datasets_dir: Path, tmp_path: Path) -> None:
    # The defect: a 16-bit PNG decoded as (nearly) all white, so two different people matched.
    p = Preprocessing(size=(32, 32))
    for subject in ("s1", "s2"):
        with Image.open(datasets_dir / "orl_faces" / subject / "1.pgm") as im:
            face = np.asarray(im)
        # a 16-bit scan with detail below the 8-bit steps: rounding it is quantisation
        a16 = face.astype(np.uint16) * 257 + np.random.default_rng(0).integers(0, 128, face.shape).astype(np.uint16)
        Image.fromarray(a16).save(tmp_path / f"{subject}.png")
        with Image.open(tmp_path / f"{subject}.png") as im:
            assert im.mode == "I;16"
        eight = load_image(datasets_dir / "orl_faces" / subject / "1.pgm", p).numpy().astype(int)
        sixteen = load_image(tmp_path / f"{subject}.png", p).numpy().astype(int)
        assert np.abs(sixteen - eight).max() <= 1
        assert sixteen.std() > 20  # a face, not a blank page
        tiff = tmp_path / f"{subject}.tif"
        Image.fromarray(face.astype(np.float32) / 255).save(tiff)
        assert np.abs(load_image(tiff, p).numpy().astype(int) - eight).max() <= 1


def test_colour_modes_keep_their_colours() -> None:
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[:20, :, 0] = 200
    rgb[20:, :, 2] = 180
    rgb[:, 30:, 1] = 90
    p = Preprocessing(size=(40, 40), channels=3)
    expected = decode_image_array(rgb, p).astype(int)
    for img in (Image.fromarray(rgb).convert("CMYK"), Image.fromarray(rgb).convert("YCbCr"), Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE)):
        assert np.abs(decode_image_array(_encode(img, "TIFF"), p).astype(int) - expected).max() <= 3, img.mode
    # JPEG in CMYK (as print shops send, Adobe-inverted) decodes like the same JPEG in RGB
    cmyk = decode_image_array(_encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95), p).astype(int)
    rgbj = decode_image_array(_encode(Image.fromarray(rgb), "JPEG", quality=95), p).astype(int)
    assert np.abs(cmyk - expected).mean() < 6 and np.abs(rgbj - expected).mean() < 6


def test_one_bit_images_are_black_and_white() -> None:
    ink = np.full((30, 30), 255, np.uint8)
    ink[10:20, 14:16] = 0
    out = decode_image_array(_encode(Image.fromarray(ink).convert("1")), Preprocessing(size=(30, 30), invert=True))
    assert set(np.unique(out)) == {0, 255} and out.sum() == 255 * 20


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_paper_is_paper(mode: str) -> None:
    # black ink on transparent pixels that are themselves black (what many editors write):
    # dropping the alpha channel gave an all-black, blank image
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[8:32, 18:22, 3] = 255  # opaque black stroke; the rest is transparent black
    img = Image.fromarray(rgba, "RGBA")
    if mode == "LA":
        img = img.convert("LA")
    elif mode == "P":
        img = img.convert("P")  # PIL keeps one transparent palette entry
        assert "transparency" in img.info or img.palette.mode == "RGBA"
    out = decode_image_array(_encode(img), Preprocessing(size=(40, 40), invert=True))[0]
    assert (out[8:32, 18:22] == 255).all()  # the ink
    assert out.sum() == 255 * 24 * 4  # and nothing else: the paper is white, inverted to 0


BLANK: dict[str, Callable[[], np.ndarray | bytes]] = {
    "1x1": lambda: np.zeros((1, 1), np.uint8),
    "white page": lambda: np.full((105, 105), 255, np.uint8),
    "black page": lambda: np.zeros((105, 105), np.uint8),
    "grey colour photo": lambda: np.full((50, 60, 3), (120, 130, 140), np.uint8),
    "sensor noise": lambda: (128 + np.random.default_rng(0).integers(-6, 7, (200, 200))).astype(np.uint8),
    "one dark pixel": lambda: np.pad(np.zeros((1, 1), np.uint8), 52, constant_values=255),
    "16-bit constant png": lambda: _encode(Image.fromarray(np.full((64, 64), 30000, np.uint16))),
    "float constant tiff": lambda: _encode(Image.fromarray(np.full((64, 64), 0.25, np.float32)), "TIFF"),
    "all transparent png": lambda: _encode(Image.fromarray(np.zeros((64, 64, 4), np.uint8), "RGBA")),
    "dark 16-bit": lambda: _encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64)).astype(np.uint16))),
}


@pytest.mark.parametrize("label", sorted(BLANK))
def test_images_without_content_are_refused(label: str, tmp_path: Path) -> None:
    source = BLANK[label]()
    path = tmp_path / "door-camera.png"
    if isinstance(source, bytes):
        path.write_bytes(source)
    else:
        Image.fromarray(source).save(path)
    for p in (Preprocessing(size=(28, 28)), Preprocessing(size=(28, 28), invert=True), Preprocessing(size=(32, 32), channels=3)):
        with pytest.raises(UnusableImageError, match=r"door-camera\.png: the image has no content") as info:
            load_image(path, p)
        assert info.value.reason == "no_content" and isinstance(info.value, DataError)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("size", [(20000, 1), (1, 20000), (2100, 100), (100, 2100)])
def test_absurd_aspect_ratios_are_refused(size: tuple[int, int], tmp_path: Path) -> None:
    w, h = size
    arr = (np.indices((h, w)).sum(0) % 2 * 255).astype(np.uint8)  # a checkerboard: content
    path = tmp_path / "strip.png"
    Image.fromarray(arr).save(path)
    with pytest.raises(UnusableImageError, match=rf"strip\.png: image of {w}x{h} pixels has an aspect ratio of \d+:1, over the limit of 20:1"):
        load_image(path, Preprocessing(size=(28, 28)))
    wide = int(MAX_ASPECT_RATIO * 100) - 100  # 19:1 is allowed
    ok = (np.indices((100, wide)).sum(0) % 2 * 255).astype(np.uint8)
    assert load_image(ok if w > h else ok.T, Preprocessing(size=(28, 28))).shape == (1, 28, 28)


def test_non_finite_pixels_are_refused(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    arr[3, 4] = np.nan
    Image.fromarray(arr).save(tmp_path / "nan.tif")
    with pytest.raises(UnusableImageError, match=r"nan\.tif: the image has NaN or infinite pixel values"):
        load_image(tmp_path / "nan.tif", Preprocessing(size=(28, 28)))
    with pytest.raises(UnusableImageError, match="NaN or infinite"):
        load_image(np.full((8, 8), np.inf), Preprocessing(size=(28, 28)))


def test_sparse_content_on_a_large_image_is_found() -> None:
    # the content test box-reduces images over a megapixel: a thin signature survives
    page = np.full((3000, 4000), 255, np.uint8)
    for t in range(1500):
        r = 1500 + int(300 * np.sin(t / 150))
        page[r : r + 3, 1000 + t] = 0
    assert decode_image_array(page, Preprocessing(size=(64, 64), invert=True)).max() > 0


def _sample(names: list[str], k: int) -> list[str]:
    return random.Random(0).sample(names, min(k, len(names)))


def test_real_images_of_every_dataset_have_content(datasets_dir: Path) -> None:
    """A sample of each dataset decodes (all real pictures have content); the sparsest
    are Omniglot's characters, down to 0.23% of ink. The whole Omniglot background set is
    decoded by tests/data/test_sources.py::test_omniglot_full_background."""
    p = Preprocessing(size=(28, 28), invert=True)
    n = 0
    for name in ("images_background_small1.zip", "images_background_small2.zip"):
        path = datasets_dir / "omniglot" / name
        if path.is_file():
            with zipfile.ZipFile(path) as zf:
                for member in _sample([m for m in zf.namelist() if m.endswith(".png")], 150):
                    decode_image_array(zf.read(member), p, name=member)
                    n += 1
    for folder, pattern in (("orl_faces", "*/*.pgm"), ("signatures", "*/*.png"), ("lfw", "*/*.jpg"), ("cedar", "*/*.png")):
        files = sorted(str(f) for f in (datasets_dir / folder).glob(pattern))
        for f in _sample(files, 100):
            decode_image_array(f, p)
            decode_image_array(f, Preprocessing(size=(64, 64), channels=3))
            n += 1
    assert n >= 500
