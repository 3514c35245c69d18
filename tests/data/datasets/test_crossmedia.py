"""Writer-verification pairs of the cross-media signatures dataset: the name and medium of
each file, the pair counts, and that every pair obeys the protocol."""

from __future__ import annotations

from math import comb
from pathlib import Path

import numpy as np
import pytest
import torch

from twinshot.data.dataset import LabelledImages
from twinshot.errors import DataError
from twinshot.data.datasets.crossmedia import (
    relabel_writer_name,
    signature_medium,
    signature_name,
    writer_verification_pairs,
)
from twinshot.data.pairs import read_pairs_csv, write_pairs_csv


def _info(path: Path) -> tuple[str, int, str]:
    n = int(Path(path).stem)
    return Path(path).parent.name, signature_name(n), signature_medium(n)


def _fake_dataset(root: Path, writers: int, numbers: range = range(1, 41)) -> Path:
    from PIL import Image

    for w in range(1, writers + 1):
        (root / str(w)).mkdir(parents=True)
        for n in numbers:
            img = Image.new("L", (8, 8), 255)
            img.putpixel((n % 8, w % 8), 0)  # some ink: a blank page is not a signature
            img.save(root / str(w) / f"{n}.png")
    return root


def test_name_and_medium_follow_the_file_number() -> None:
    assert [signature_name(n) for n in (1, 3, 10, 11, 13, 23, 33, 40)] == [1, 3, 10, 1, 3, 3, 3, 10]
    assert [signature_medium(n) for n in (1, 10, 11, 20, 21, 30, 31, 40)] == [
        "paper", "paper", "tablet", "tablet", "phone1", "phone1", "phone2", "phone2"]
    with pytest.raises(DataError, match="1..40"):
        signature_name(41)


def test_pair_counts_and_protocol_on_a_synthetic_tree(tmp_path: Path) -> None:
    root = _fake_dataset(tmp_path / "sig", writers=3)
    pairs = writer_verification_pairs(root)
    genuine = [p for p in pairs if p.same]
    impostor = [p for p in pairs if not p.same]
    # per writer and name: 4 media -> C(4, 2) genuine pairs; per name: C(3, 2) writer pairs x 4 x 4
    assert len(genuine) == 3 * 10 * comb(4, 2)
    assert len(impostor) == 10 * comb(3, 2) * 16
    for p in genuine:
        (w1, n1, m1), (w2, n2, m2) = _info(p.path1), _info(p.path2)
        assert w1 == w2 and n1 == n2 and m1 != m2
    for p in impostor:
        (w1, n1, _), (w2, n2, _) = _info(p.path1), _info(p.path2)
        assert w1 != w2 and n1 == n2
    assert len({(p.path1, p.path2) for p in pairs}) == len(pairs)


def test_impostor_subset_is_seeded_and_csv_round_trips(tmp_path: Path) -> None:
    root = _fake_dataset(tmp_path / "sig", writers=3)
    a = writer_verification_pairs(root, max_impostors=50, seed=1)
    b = writer_verification_pairs(root, max_impostors=50, seed=1)
    c = writer_verification_pairs(root, max_impostors=50, seed=2)
    assert a == b and a != c
    assert sum(not p.same for p in a) == 50
    csv_path = write_pairs_csv(a, tmp_path / "out" / "pairs.csv", relative_to=tmp_path / "out")
    back = read_pairs_csv(csv_path)
    assert [(p.path1.resolve(), p.path2.resolve(), p.same) for p in back] == [(p.path1.resolve(), p.path2.resolve(), p.same) for p in a]
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_writer_subset_and_errors(tmp_path: Path) -> None:
    root = _fake_dataset(tmp_path / "sig", writers=4)
    pairs = writer_verification_pairs(root, writers=["2", "4"])
    assert {_info(p.path1)[0] for p in pairs} | {_info(p.path2)[0] for p in pairs} == {"2", "4"}
    with pytest.raises(DataError, match="no such writer"):
        writer_verification_pairs(root, writers=["9"])
    with pytest.raises(DataError, match="two writers"):
        writer_verification_pairs(root, writers=["1"])
    with pytest.raises(DataError, match="no such signatures folder"):
        writer_verification_pairs(tmp_path / "missing")


def test_relabel_writer_name_groups_by_name() -> None:
    paths = [f"/d/{w}/{n}.png" for w in ("7", "8") for n in range(1, 41)]
    labels = torch.tensor([0] * 40 + [1] * 40)
    ds = LabelledImages(torch.zeros((80, 1, 2, 2), dtype=torch.uint8), labels, ["7", "8"], torch.zeros(2, dtype=torch.long), [""], paths)
    out = relabel_writer_name(ds)
    assert out.n_classes == 20 and out.group_names[0] == "name01"
    assert torch.bincount(out.labels).tolist() == [4] * 20
    for i in (0, 2, 12, 45, 79):
        writer, n = paths[i].split("/")[2], int(paths[i].split("/")[3][:-4])
        assert out.class_names[int(out.labels[i])] == f"{writer}/name{signature_name(n):02d}"
        assert out.group_names[int(out.class_groups[out.labels[i]])] == f"name{signature_name(n):02d}"


def test_real_signatures_counts(datasets_dir: Path) -> None:
    root = datasets_dir / "signatures"
    if not root.is_dir():
        pytest.skip(f"signatures not found in {datasets_dir}")
    pairs = writer_verification_pairs(root, writers=["1", "2", "3"])
    same = np.array([p.same for p in pairs])
    assert same.sum() == 3 * 10 * 6 and (~same).sum() == 10 * 3 * 16
    for p in pairs[:5] + pairs[-5:]:
        assert p.path1.is_file() and p.path2.is_file()


def test_writer_name_run_data_splits_by_writer(tmp_path: Path) -> None:
    from twinshot.evaluation.signatures import writer_name_run_data
    from twinshot.training import load_config

    root = _fake_dataset(tmp_path / "sig", writers=5)
    config = load_config(preset="signatures", overrides={"data.sources": [str(root)], "data.val": 2, "model.preprocessing.size": [8, 8]})
    data = writer_name_run_data(config)
    train_writers = {c.split("/")[0] for c in data.train.class_names}
    val_writers = {c.split("/")[0] for c in data.val.class_names}
    assert len(train_writers) == 3 and len(val_writers) == 2 and not train_writers & val_writers
    assert data.train.n_classes == 30 and data.val.n_classes == 20
    assert len(data.train.group_names) == 10


def test_preset_relabels_through_the_trainer_data_hook(tmp_path: Path) -> None:
    """`twinshot train --preset signatures` gets writer/name classes from `data.relabel`
    alone (the same classes as writer_name_run_data), split by writer."""
    from twinshot.evaluation.signatures import writer_name_run_data
    from twinshot.training import load_config
    from twinshot.training.data import prepare_data
    from twinshot.training.run import model_spec

    root = _fake_dataset(tmp_path / "sig", writers=5)
    config = load_config(preset="signatures", overrides={"data.sources": [str(root)], "data.val": 2, "model.preprocessing.size": [8, 8]})
    assert config.data.relabel == "signatures_writer_name"
    data = prepare_data(config.data, model_spec(config).preprocessing)
    ref = writer_name_run_data(config)
    assert data.train.class_names == ref.train.class_names and data.val.class_names == ref.val.class_names
    assert torch.equal(data.train.labels, ref.train.labels)
    assert data.train.n_classes == 30 and data.val.n_classes == 20


def test_unknown_relabel_is_a_config_error(tmp_path: Path) -> None:
    from twinshot.errors import ConfigError
    from twinshot.training import load_config
    from twinshot.training.data import prepare_data
    from twinshot.training.run import model_spec

    config = load_config(preset="signatures", overrides={"data.relabel": "by_moon_phase", "data.sources": [str(tmp_path / "none")]})
    with pytest.raises(ConfigError, match="unknown relabel 'by_moon_phase'; valid: cedar_writers, signatures_writer_name"):
        prepare_data(config.data, model_spec(config).preprocessing)
