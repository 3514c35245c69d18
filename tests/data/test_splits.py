"""class_split: class- or group-disjoint, seeded, fractions or counts, clear errors."""

from __future__ import annotations

import pytest
import torch

from tests.data._helpers import synthetic_dataset
from twinshot.data import Split, class_split
from twinshot.errors import DataError


def _names(part) -> set[str]:
    return set(part.class_names) if part is not None else set()


def test_parts_are_class_disjoint_and_cover_everything() -> None:
    ds = synthetic_dataset([5] * 20)
    split = class_split(ds, val=0.2, test=0.1, seed=3)
    assert isinstance(split, Split)
    train, val, test = _names(split.train), _names(split.val), _names(split.test)
    assert (len(train), len(val), len(test)) == (14, 4, 2)
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(ds.class_names)
    # every image lands in exactly one part, with its own class
    ids = torch.cat([p.images[:, 0, 0, 0] for p in (split.train, split.val, split.test)])
    assert sorted(ids.tolist()) == list(range(100))
    for part in (split.train, split.val, split.test):
        assert part.labels.max() == part.n_classes - 1  # relabelled 0..n-1
        assert part.class_names == sorted(part.class_names)  # dataset order kept
        for i in range(len(part)):
            original = int(part.images[i, 0, 0, 0])
            assert part.class_names[part.labels[i]] == ds.class_names[ds.labels[original]]


def test_counts_and_missing_parts() -> None:
    ds = synthetic_dataset([3] * 10)
    split = class_split(ds, val=3, test=0)
    assert split.val.n_classes == 3 and split.train.n_classes == 7 and split.test is None
    split = class_split(ds, val=0, test=2)
    assert split.val is None and split.test.n_classes == 2


def test_seeded() -> None:
    ds = synthetic_dataset([2] * 30)
    a = class_split(ds, val=0.3, seed=1)
    b = class_split(ds, val=0.3, seed=1)
    c = class_split(ds, val=0.3, seed=2)
    assert a.val.class_names == b.val.class_names
    assert a.val.class_names != c.val.class_names


def test_test_part_does_not_depend_on_val() -> None:
    ds = synthetic_dataset([2] * 30)
    assert class_split(ds, val=0.1, test=5).test.class_names == class_split(ds, val=0.4, test=5).test.class_names


def test_by_group_holds_out_whole_groups() -> None:
    groups = [c // 3 for c in range(15)]  # 5 groups of 3 classes
    ds = synthetic_dataset([4] * 15, groups=groups)
    split = class_split(ds, val=1, test=1, by="group", seed=0)
    parts = (split.train, split.val, split.test)
    assert [len(p.group_names) for p in parts] == [3, 1, 1]
    assert [p.n_classes for p in parts] == [9, 3, 3]
    group_sets = [set(p.group_names) for p in parts]
    assert not (group_sets[0] & group_sets[1] or group_sets[0] & group_sets[2] or group_sets[1] & group_sets[2])
    for part in parts:  # group names and indices stay consistent after the subset
        for name, g in zip(part.class_names, part.class_groups.tolist()):
            assert name.split("/")[0] == part.group_names[g]


def test_classes_without_images_are_ignored() -> None:
    ds = synthetic_dataset([3, 3, 3, 3]).subset_classes([0, 1, 2, 3])
    ds.labels[ds.labels == 3] = 2  # class 3 is now empty
    split = class_split(ds, val=1)
    assert split.train.n_classes + split.val.n_classes == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val": 0.01}, r"val=0.01 of 10 classes is 0 classes"),
        ({"val": 5, "test": 5}, r"take 5 \+ 5 of the 10 classes, leaving none to train on"),
        ({"val": 1.0}, r"val=1.0 must be a fraction in \[0, 1\)"),
        ({"val": -1}, "must not be negative"),
        ({"val": "a"}, "must be a fraction"),
        ({"by": "image"}, "split by 'image' is not valid; valid: class, group"),
        ({"val": 1, "by": "group"}, r"take 1 \+ 0 of the 1 groups"),
    ],
)
def test_errors(kwargs, match) -> None:
    ds = synthetic_dataset([2] * 10, groups=[0] * 10)
    with pytest.raises(DataError, match=match):
        class_split(ds, **kwargs)


def test_limit_units_keeps_whole_groups_seeded_and_nested() -> None:
    from twinshot.data import limit_units

    ds = synthetic_dataset([2] * 20, groups=[c // 2 for c in range(20)])  # 10 groups of 2 classes
    five = limit_units(ds, 5, seed=3, by="group")
    assert len(five.group_names) == 5 and five.n_classes == 10 and len(five) == 20
    assert all(name.split("/")[0] in five.group_names for name in five.class_names)  # whole groups
    assert five.class_names == sorted(five.class_names)  # dataset order kept
    assert limit_units(ds, 5, seed=3, by="group").group_names == five.group_names  # seeded
    assert set(limit_units(ds, 3, seed=3, by="group").group_names) < set(five.group_names)  # nested
    assert limit_units(ds, 5, seed=4, by="group").group_names != five.group_names
    assert limit_units(ds, 10, seed=3, by="group") is ds and limit_units(ds, 7, by="class").n_classes == 7
    for bad in (0, -1, 2.5, True):
        with pytest.raises(DataError, match="train_limit must be a positive whole number"):
            limit_units(ds, bad, by="group")
