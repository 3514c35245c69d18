"""Keeping and dropping whole groups (``twinshot.data.groups``)."""

from __future__ import annotations

import pytest
import torch

from tests.data._helpers import synthetic_dataset
from twinshot.data.groups import parse_group_list, select_groups
from twinshot.errors import DataError


def _three_groups():
    return synthetic_dataset(counts=[2, 3, 4, 5, 6, 7], groups=[0, 0, 1, 1, 2, 2])


def test_parse_group_list() -> None:
    assert parse_group_list(" Latin, Greek,,Latin ") == ("Latin", "Greek")
    assert parse_group_list("") == ()


def test_drop_and_keep() -> None:
    ds = _three_groups()
    out = select_groups(ds, drop=["g1"])
    assert out.group_names == ["g0", "g2"]
    assert out.class_names == ["g0/c00", "g0/c01", "g2/c04", "g2/c05"]
    assert torch.bincount(out.labels).tolist() == [2, 3, 6, 7]
    assert out.class_groups.tolist() == [0, 0, 1, 1]
    # the images are the dropped group's complement, in their old order
    kept = torch.cat([torch.arange(0, 5), torch.arange(14, 27)])
    assert torch.equal(out.images[:, 0, 0, 0], kept.to(torch.uint8))
    only = select_groups(ds, keep=["g2", "g0"], drop=["g0"])
    assert only.group_names == ["g2"] and only.n_classes == 2
    assert select_groups(ds) is ds


def test_unknown_or_empty_is_one_line_error() -> None:
    ds = _three_groups()
    with pytest.raises(DataError, match="no group named 'Latin'") as exc:
        select_groups(ds, drop=["Latin"], what="--exclude-groups")
    assert str(exc.value).startswith("--exclude-groups:") and "\n" not in str(exc.value)
    with pytest.raises(DataError, match="no class left"):
        select_groups(ds, drop=["g0", "g1", "g2"])
