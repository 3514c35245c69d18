"""Decoding single images: paths, bytes, arrays, PIL; resizing, channels, inversion, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.data._helpers import png_bytes
from twinshot.data import Preprocessing, load_image, load_images
from twinshot.errors import DataError


@pytest.fixture
def grey() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (20, 30), dtype=np.uint8)


def test_path_and_bytes_decode_identically(tmp_path: Path, grey: np.ndarray) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(grey).save(path)
    p = Preprocessing(size=(20, 30))
    from_path = load_image(path, p)
    assert from_path.dtype == torch.uint8 and from_path.shape == (1, 20, 30)
    assert torch.equal(from_path[0], torch.from_numpy(grey))
    assert torch.equal(load_image(path.read_bytes(), p), from_path)
    assert torch.equal(load_image(str(path), p), from_path)
    assert torch.equal(load_image(Image.open(path), p), from_path)


def test_invert_makes_black_ink_the_foreground(tmp_path: Path) -> None:
    ink = np.full((10, 10), 255, np.uint8)
    ink[4:6, 2:8] = 0  # black stroke on white paper
    path = tmp_path / "glyph.png"
    Image.fromarray(ink).convert("1").save(path)  # 1-bit, like Omniglot
    out = load_image(path, Preprocessing(size=(10, 10), invert=True))[0]
    assert out[4:6, 2:8].eq(255).all()
    assert out.sum() == 255 * 12  # everything else is 0
    plain = load_image(path, Preprocessing(size=(10, 10)))[0]
    assert torch.equal(plain, 255 - out)


def test_resize_and_channels(grey: np.ndarray) -> None:
    small = load_image(grey, Preprocessing(size=(7, 9)))
    assert small.shape == (1, 7, 9)
    expected = np.array(Image.fromarray(grey).resize((9, 7), Image.Resampling.BILINEAR))
    assert torch.equal(small[0], torch.from_numpy(expected))
    rgb = load_image(grey, Preprocessing(size=(20, 30), channels=3))
    assert rgb.shape == (3, 20, 30)
    assert torch.equal(rgb[0], rgb[1]) and torch.equal(rgb[1], rgb[2])


def test_colour_to_grey_matches_pil() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    out = load_image(rgb, Preprocessing(size=(12, 12)))
    expected = np.array(Image.fromarray(rgb).convert("L"))
    assert torch.equal(out[0], torch.from_numpy(expected))


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a,  # (H, W) uint8
        lambda a: a.astype(np.float32) / 255.0,  # float in [0, 1]
        lambda a: torch.from_numpy(a)[None],  # (1, H, W) tensor
        lambda a: a[..., None],  # (H, W, 1)
    ],
)
def test_array_inputs(make, grey: np.ndarray) -> None:
    out = load_image(make(grey), Preprocessing(size=(20, 30)))
    assert torch.equal(out[0], torch.from_numpy(grey))


def test_bool_array_is_black_and_white() -> None:
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = True
    out = load_image(mask, Preprocessing(size=(4, 4)))
    assert out[0, 1, 1] == 255 and out.sum() == 255


def test_load_images_stacks(grey: np.ndarray) -> None:
    batch = load_images([grey, grey[::-1].copy()], Preprocessing(size=(10, 10)))
    assert batch.shape == (2, 1, 10, 10) and batch.dtype == torch.uint8
    four_d = load_images(np.stack([grey, grey])[:, None], Preprocessing(size=(20, 30)))
    assert four_d.shape == (2, 1, 20, 30)
    with pytest.raises(DataError, match="no images"):
        load_images([], Preprocessing())


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.png: no such image file"):
        load_image(tmp_path / "nope.png", Preprocessing())


def test_not_an_image_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(DataError, match=r"notes\.png: not a readable image"):
        load_image(path, Preprocessing())


def test_truncated_png_is_named(tmp_path: Path) -> None:
    noise = np.random.default_rng(2).integers(0, 256, (64, 64), dtype=np.uint8)
    data = png_bytes(noise)
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(DataError, match=r"cut\.png: truncated or corrupt image") as info:
        load_image(path, Preprocessing(size=(64, 64)))
    assert "\n" not in str(info.value)


def test_refuses_too_many_pixels(grey: np.ndarray) -> None:
    with pytest.raises(DataError, match="exceeds the limit of 100 pixels"):
        load_image(png_bytes(grey), Preprocessing(), max_pixels=100)


def test_bad_inputs() -> None:
    with pytest.raises(DataError, match="0 bytes"):
        load_image(b"", Preprocessing())
    with pytest.raises(DataError, match="not an"):
        load_image(np.zeros((2, 3, 4, 5), np.uint8), Preprocessing())


def test_preprocessing_validation_and_round_trip() -> None:
    with pytest.raises(DataError, match="size"):
        Preprocessing(size=(0, 10))
    with pytest.raises(DataError, match="channels"):
        Preprocessing(channels=2)
    with pytest.raises(DataError, match="std"):
        Preprocessing(std=0)
    p = Preprocessing(size=[28, 28], invert=True, mean=0.1, std=0.5)
    assert p.size == (28, 28)
    assert Preprocessing.from_dict(p.to_dict()) == p


def test_to_float_normalises() -> None:
    images = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    assert torch.allclose(Preprocessing().to_float(images), torch.tensor([[[[0.0, 1.0]]]]))
    out = Preprocessing(mean=0.5, std=0.5).to_float(images)
    assert torch.allclose(out, torch.tensor([[[[-1.0, 1.0]]]]))


def test_decompression_bomb_beyond_pil_limit_is_a_data_error(tmp_path) -> None:
    """PIL raises its own error above 2 x MAX_IMAGE_PIXELS before the size can be read."""
    import zlib, struct
    from twinshot.data import Preprocessing, load_image
    from twinshot.errors import DataError

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    side = 20000  # 400 M pixels, declared in the header only
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)) + chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    with pytest.raises(DataError, match="bomb.png.*pixels"):
        load_image(path, Preprocessing(size=(28, 28)), max_pixels=10**12)
