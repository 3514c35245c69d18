"""CEDAR: file names, the writer-independent pairs (genuine, skilled, random), the CSVs the
evaluation reads, the pairs command, and the writer relabelling used for training."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from twinshot.data.datasets.cedar import (
    cedar_images,
    cedar_pairs,
    parse_cedar_name,
    parse_writers,
    relabel_cedar_writers,
    write_cedar_pairs,
)
from twinshot.data.pairs import read_pairs_csv
from twinshot.errors import DataError


def fake_cedar(root: Path, writers: int = 3, per_writer: int = 4, size: tuple[int, int] = (36, 24)) -> Path:
    """A CEDAR-like folder: white pages with a writer-specific ink scribble (forgeries shifted)."""
    import numpy as np
    from PIL import Image, ImageDraw

    for sub, stem in (("full_org", "original"), ("full_forg", "forgeries")):
        (root / sub).mkdir(parents=True)
        for w in range(1, writers + 1):
            pts = np.random.default_rng(w).integers(2, min(size) - 2, (5, 2))
            for n in range(1, per_writer + 1):
                img = Image.new("L", size, 255)
                jitter = np.random.default_rng(100 * w + n + (50 if stem == "forgeries" else 0)).integers(-2, 3, pts.shape)
                shift = 3 if stem == "forgeries" else 0
                ImageDraw.Draw(img).line([tuple(int(v) for v in p) for p in (pts + jitter + shift)], fill=0, width=2)
                img.save(root / sub / f"{stem}_{w}_{n}.png")
    (root / "full_org" / "Thumbs.db").write_bytes(b"x")
    return root


def test_names_and_writer_lists() -> None:
    assert parse_cedar_name("/a/full_org/original_3_17.png") == (3, 17, True)
    assert parse_cedar_name("forgeries_45_2.PNG") == (45, 2, False)
    assert parse_cedar_name("3.png") is None
    assert parse_writers("36-38,1") == [1, 36, 37, 38]
    assert parse_writers([2, 1, 2]) == [1, 2]
    with pytest.raises(DataError, match="not a number or a range"):
        parse_writers("a-b")


def test_pairs_follow_the_protocol(tmp_path: Path) -> None:
    root = fake_cedar(tmp_path / "cedar")
    pairs = cedar_pairs(root, "1-2")
    info = lambda p: parse_cedar_name(p.name)  # noqa: E731
    assert len(pairs["genuine"]) == 2 * 6 and len(pairs["skilled"]) == 2 * 16 and len(pairs["random"]) == 2 * 6
    for p in pairs["genuine"]:
        (w1, n1, g1), (w2, n2, g2) = info(p.path1), info(p.path2)
        assert p.same and g1 and g2 and w1 == w2 and n1 != n2
    for p in pairs["skilled"]:
        (w1, _, g1), (w2, _, g2) = info(p.path1), info(p.path2)
        assert not p.same and g1 and not g2 and w1 == w2
    for p in pairs["random"]:
        (w1, _, g1), (w2, _, g2) = info(p.path1), info(p.path2)
        assert not p.same and g1 and g2 and w1 != w2 and {w1, w2} <= {1, 2}
    assert cedar_pairs(root, "1-2") == pairs  # seeded


def test_written_csvs_are_read_by_the_evaluation(tmp_path: Path) -> None:
    root = fake_cedar(tmp_path / "cedar")
    files = write_cedar_pairs(root, tmp_path / "pairs", "1-3", random_per_writer=2)
    skilled = read_pairs_csv(files["skilled"])
    assert sum(p.same for p in skilled) == 18 and sum(not p.same for p in skilled) == 48
    assert all(p.path1.is_file() and p.path2.is_file() for p in skilled)
    with files["all"].open() as f:
        kinds = [row["kind"] for row in csv.DictReader(f)]
    assert kinds.count("genuine") == 18 and kinds.count("skilled") == 48 and kinds.count("random") == 6


def test_bad_folders_and_writers_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a CEDAR folder"):
        cedar_images(tmp_path)
    root = fake_cedar(tmp_path / "cedar", writers=2)
    with pytest.raises(DataError, match=r"no images of writer\(s\) 7"):
        cedar_images(root, "1,7")
    with pytest.raises(DataError, match="no random impostor pairs"):
        write_cedar_pairs(root, tmp_path / "out", "1")


def test_pairs_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from twinshot.cli.main import cli

    root = fake_cedar(tmp_path / "cedar")
    assert cli(["pairs", "cedar", str(root), "--writers", "2-3", "--out", str(tmp_path / "p"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pairs"]["skilled"] == {"genuine": 12, "skilled": 32}
    assert Path(out["files"]["random"]).is_file()
    assert cli(["pairs", "cedar", str(tmp_path), "--out", str(tmp_path / "q")]) == 2
    assert "not a CEDAR folder" in capsys.readouterr().err


def test_relabel_groups_a_writer_with_its_forgeries(tmp_path: Path) -> None:
    from twinshot.data import Preprocessing, load_dataset

    root = fake_cedar(tmp_path / "cedar", writers=2, per_writer=2)
    ds = relabel_cedar_writers(load_dataset(root, Preprocessing(size=(12, 18))))
    assert ds.class_names == ["1", "1/forged", "2", "2/forged"]
    assert ds.group_names == ["1", "2"] and ds.class_groups.tolist() == [0, 0, 1, 1]
    for label, path in zip(ds.labels.tolist(), ds.paths):
        w, _, genuine = parse_cedar_name(path)
        assert ds.class_names[label] == (str(w) if genuine else f"{w}/forged")


def test_real_cedar_counts(datasets_dir: Path) -> None:
    root = datasets_dir / "cedar"
    if not root.is_dir():
        pytest.skip("cedar not found")
    pairs = cedar_pairs(root, "36-37")
    assert len(pairs["genuine"]) == 2 * 276 and len(pairs["skilled"]) == 2 * 576 and len(pairs["random"]) == 2 * 276
    assert len(cedar_images(root)) == 45 * 48
