"""load_dataset: folders and zips of class folders, naming, errors, the process pool, the cache."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import make_image_folder
from tests.data._helpers import png_bytes, zip_folder
from twinshot.data import Preprocessing, load_dataset
from twinshot.data import sources
from twinshot.errors import DataError

P32 = Preprocessing(size=(32, 32), invert=True)


def _same(a, b) -> None:
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.labels, b.labels)
    assert a.class_names == b.class_names
    assert a.group_names == b.group_names
    assert torch.equal(a.class_groups, b.class_groups)


def test_nested_folder_names_classes_and_groups(image_folder: Path) -> None:
    ds = load_dataset(image_folder, P32, workers=1)
    assert len(ds) == 40 and ds.images.shape == (40, 1, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.group_names == ["alphabet0", "alphabet1"]
    assert ds.class_names[:2] == ["alphabet0/character01", "alphabet0/character02"]
    assert ds.class_names[4] == "alphabet1/character01"
    assert ds.class_groups.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert ds.labels.tolist() == [c for c in range(8) for _ in range(5)]
    assert ds.paths[0] == str(image_folder / "alphabet0" / "character01" / "0000_01.png")
    assert ds.preprocessing == P32
    # 1-bit ink inverted to the foreground: mostly zeros, ink is 255
    assert set(torch.unique(ds.images).tolist()) == {0, 255}
    assert (ds.images == 0).float().mean() > 0.5


def test_flat_folder_has_one_empty_group(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "flat", groups=1, classes_per_group=3, per_class=2, nested=False)
    ds = load_dataset(root, P32, workers=1)
    assert ds.class_names == ["class00", "class01", "class02"]
    assert ds.group_names == [""] and ds.class_groups.tolist() == [0, 0, 0]


def test_order_is_sorted_and_hidden_and_other_files_ignored(tmp_path: Path) -> None:
    root = tmp_path / "set"
    glyph = np.zeros((8, 8), np.uint8)
    glyph[2:6, 3] = 255  # a stroke: a blank image is refused
    for cls, files in [("b", ["2.PNG", "10.jpg", "1.bmp"]), ("a", ["x.gif"])]:
        (root / cls).mkdir(parents=True)
        for f in files:
            Image.fromarray(glyph).save(root / cls / f)
    (root / "a" / ".hidden.png").write_bytes(b"not an image")
    (root / "a" / "notes.txt").write_text("ignored")
    (root / ".cache").mkdir()
    Image.fromarray(glyph).save(root / ".cache" / "thumb.png")
    (root / "__MACOSX" / "a").mkdir(parents=True)
    (root / "__MACOSX" / "a" / "._x.png").write_bytes(b"resource fork")
    ds = load_dataset(root, Preprocessing(size=(8, 8)), workers=1)
    assert ds.class_names == ["a", "b"]
    assert [Path(p).name for p in ds.paths] == ["x.gif", "1.bmp", "10.jpg", "2.PNG"]


@pytest.mark.parametrize("top", ["images_background", None])
def test_zip_matches_folder(image_folder: Path, tmp_path: Path, top: str | None) -> None:
    archive = zip_folder(image_folder, tmp_path / "set.zip", top=top)
    from_zip = load_dataset(archive, P32, workers=1)
    _same(from_zip, load_dataset(image_folder, P32, workers=1))
    prefix = f"{top}/" if top else ""
    assert from_zip.paths[0] == f"{archive}:{prefix}alphabet0/character01/0000_01.png"


def test_zip_skips_macosx_hidden_and_a_single_class_keeps_its_folder(image_folder: Path, tmp_path: Path) -> None:
    archive = tmp_path / "one.zip"
    data = (image_folder / "alphabet0" / "character01" / "0000_01.png").read_bytes()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("only/1.png", data)
        zf.writestr("only/2.png", data)
        zf.writestr("only/.3.png", b"junk")
        zf.writestr("__MACOSX/only/._1.png", b"junk")
        zf.writestr("only/readme.txt", b"text")
    ds = load_dataset(archive, P32)
    assert ds.class_names == ["only"] and ds.group_names == [""] and len(ds) == 2


def test_workers_give_the_same_result(image_folder: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sources, "MIN_IMAGES_FOR_POOL", 1)
    archive = zip_folder(image_folder, tmp_path / "set.zip", top="top")
    for src in (image_folder, archive):
        _same(load_dataset(src, P32, workers=2), load_dataset(src, P32, workers=1))


def test_progress_bar_goes_to_stderr(image_folder: Path, capsys) -> None:
    load_dataset(image_folder, P32, progress=True, workers=1)
    out = capsys.readouterr()
    assert out.out == "" and "decoding" in out.err


# ---- errors -------------------------------------------------------------------------


def _one_line_error(source, match: str) -> str:
    with pytest.raises(DataError, match=match) as info:
        load_dataset(source, P32, workers=1)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_path(tmp_path: Path) -> None:
    _one_line_error(tmp_path / "nowhere", "nowhere: no such folder or zip file")


def test_not_a_folder_or_zip(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    _one_line_error(tmp_path / "a.txt", "a.txt: not a folder or a .zip file")
    (tmp_path / "bad.zip").write_bytes(b"PK not really")
    _one_line_error(tmp_path / "bad.zip", "bad.zip: not a readable zip file")


def test_empty_folder_and_zip(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_bytes(b"")
    _one_line_error(tmp_path / "empty", "empty: empty folder")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w"):
        pass
    _one_line_error(tmp_path / "empty.zip", "empty.zip: empty zip file")


def test_images_without_class_folders(tmp_path: Path) -> None:
    root = tmp_path / "loose"
    root.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / f"{i}.png")
    _one_line_error(root, "3 image\\(s\\) lie directly in the folder, not in class sub-folders")


def test_folders_without_images(tmp_path: Path) -> None:
    root = tmp_path / "noimg"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.txt").write_text("x")
    _one_line_error(root, "noimg: no images in the folder or its sub-folders")


def _truncate(path: Path) -> None:
    noise = np.random.default_rng(3).integers(0, 256, (32, 32), dtype=np.uint8)
    data = png_bytes(noise)
    path.write_bytes(data[: len(data) // 2])


def test_truncated_png_in_folder_is_named(image_folder: Path) -> None:
    bad = image_folder / "alphabet1" / "character02" / "0005_03.png"
    _truncate(bad)
    _one_line_error(image_folder, f"{bad}: truncated or corrupt image")


def test_truncated_png_in_zip_is_named(image_folder: Path, tmp_path: Path, monkeypatch) -> None:
    _truncate(image_folder / "alphabet1" / "character02" / "0005_03.png")
    archive = zip_folder(image_folder, tmp_path / "set.zip", top="images_background")
    member = "images_background/alphabet1/character02/0005_03.png"
    _one_line_error(archive, f"set.zip:{member}: truncated or corrupt image")
    # the same error comes back from the worker processes
    monkeypatch.setattr(sources, "MIN_IMAGES_FOR_POOL", 1)
    with pytest.raises(DataError, match=f"set.zip:{member}: truncated"):
        load_dataset(archive, P32, workers=2)


def test_corrupt_zip_member_is_named(image_folder: Path, tmp_path: Path) -> None:
    archive = tmp_path / "stored.zip"
    good = (image_folder / "alphabet0" / "character01" / "0000_01.png").read_bytes()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a/1.png", good)
        zf.writestr("b/1.png", good)
    raw = bytearray(archive.read_bytes())
    second = raw.rfind(good)  # the stored bytes of b/1.png
    raw[second + len(good) - 5] ^= 0xFF
    archive.write_bytes(bytes(raw))
    _one_line_error(archive, "stored.zip:b/1.png: cannot read zip member \\(Bad CRC-32")


def test_symlinked_class_folders_are_followed_once(image_folder: Path, tmp_path: Path) -> None:
    root = tmp_path / "linked"
    root.mkdir()
    (root / "real").symlink_to(image_folder / "alphabet0", target_is_directory=True)
    (root / "real" / "character01" / "loop").symlink_to(root, target_is_directory=True)
    ds = load_dataset(root, P32, workers=1)
    assert ds.class_names == [f"real/character0{i}" for i in range(1, 5)] and len(ds) == 20


# ---- cache --------------------------------------------------------------------------


def test_cache_round_trip_and_invalidation(image_folder: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    first = load_dataset(image_folder, P32, cache_dir=cache, workers=1)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    with monkeypatch.context() as m:
        m.setattr(sources, "decode_listing", no_decoding)
        second = load_dataset(image_folder, P32, cache_dir=cache, workers=1)
    _same(first, second)
    assert second.paths == first.paths and second.preprocessing == first.preprocessing

    # other preprocessing: another entry
    load_dataset(image_folder, Preprocessing(size=(16, 16)), cache_dir=cache, workers=1)
    assert len(list(cache.iterdir())) == 2

    # a changed file: a miss, and the new content is decoded
    changed = image_folder / "alphabet0" / "character01" / "0000_01.png"
    dot = np.full((32, 32), 255, np.uint8)
    dot[15:17, 15:17] = 0  # paper with one dot
    Image.fromarray(dot).save(changed)
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = load_dataset(image_folder, P32, cache_dir=cache, workers=1)
    assert third.images[0].sum() == 4 * 255 and first.images[0].sum() > 4 * 255
    assert not [f for f in cache.iterdir() if f.suffix == ".tmp"]


def test_zip_cache_is_keyed_by_the_file(image_folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    archive = zip_folder(image_folder, tmp_path / "set.zip", top="top")
    first = load_dataset(archive, P32, cache_dir=cache, workers=1)
    assert load_dataset(archive, P32, cache_dir=cache, workers=1).paths == first.paths
    shutil.rmtree(image_folder / "alphabet1")
    zip_folder(image_folder, archive, top="top")  # rewritten: new size and mtime
    assert len(load_dataset(archive, P32, cache_dir=cache, workers=1)) == 20


def test_damaged_cache_is_rebuilt(image_folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_dataset(image_folder, P32, cache_dir=cache, workers=1)
    (entry,) = cache.iterdir()
    entry.write_bytes(b"garbage")
    _same(load_dataset(image_folder, P32, cache_dir=cache, workers=1), first)
    assert entry.stat().st_size > 1000


# ---- real Omniglot ------------------------------------------------------------------


def test_omniglot_small_zip(omniglot_dir: Path, tmp_path: Path, monkeypatch) -> None:
    archive = omniglot_dir / "images_background_small1.zip"
    ds = load_dataset(archive, Preprocessing(size=(105, 105), invert=True), cache_dir=tmp_path)
    assert len(ds) == 2720 and ds.images.shape == (2720, 1, 105, 105)
    assert ds.n_classes == 136
    assert ds.group_names == ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"]
    assert ds.class_names[0] == "Balinese/character01"
    assert all(name.split("/")[0] == ds.group_names[g] for name, g in zip(ds.class_names, ds.class_groups.tolist()))
    assert torch.bincount(ds.labels).eq(20).all()  # 20 drawers per character
    assert ds.paths[0] == f"{archive}:images_background_small1/Balinese/character01/0108_01.png"
    # ink is the foreground after inversion: mostly background zeros, strokes at 255
    assert set(torch.unique(ds.images).tolist()) == {0, 255}
    ink = (ds.images > 0).float().mean().item()
    assert 0.02 < ink < 0.2
    assert ds.images[:, :, 0, :].float().mean() < 0.01 * 255  # the top row is paper
    # the second load reads the cache (its speed is measured by tests/data/bench_data.py)
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(sources, "decode_listing", no_decoding)
    again = load_dataset(archive, Preprocessing(size=(105, 105), invert=True), cache_dir=tmp_path)
    assert torch.equal(again.images, ds.images)


@pytest.mark.slow
def test_omniglot_full_background(omniglot_dir: Path) -> None:
    ds = load_dataset(omniglot_dir / "images_background.zip", Preprocessing(size=(28, 28), invert=True))
    assert len(ds) == 19280 and ds.n_classes == 964 and len(ds.group_names) == 30
    assert ds.images.shape == (19280, 1, 28, 28)
    assert ds.class_names[0] == "Alphabet_of_the_Magi/character01"
    assert torch.bincount(ds.labels).eq(20).all()
    assert (ds.images > 127).float().mean() < 0.2
