"""``prepare_data``: ``data.drop_train_groups`` thins the training part, never the split."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_image_folder
from twinshot.errors import DataError
from twinshot.training.config import load_config
from twinshot.training.data import prepare_data
from twinshot.training.run import model_spec


def _groups(ds) -> list[str]:
    return sorted({ds.group_names[g] for g in ds.class_groups.tolist()})


def test_drop_train_groups_keeps_the_split(tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "images", groups=4, classes_per_group=2, per_class=3, size=16)
    base = {"data.sources": [str(folder)], "data.val": 1, "data.split_seed": 0, "data.rotations": [90],
            "model.preprocessing.size": [16, 16]}
    config = load_config(overrides=base)
    full = prepare_data(config.data, model_spec(config).preprocessing)
    train_groups = _groups(full.train)
    assert len(train_groups) == 3
    dropped = train_groups[:2]
    config = load_config(overrides={**base, "data.drop_train_groups": dropped})
    thin = prepare_data(config.data, model_spec(config).preprocessing)
    assert thin.val.class_names == full.val.class_names  # the same group held out
    assert _groups(thin.train) == train_groups[2:]
    assert thin.train.n_classes == 2 * 2  # 2 characters and their rotated copies
    held_out = _groups(full.val)[0]
    config = load_config(overrides={**base, "data.drop_train_groups": [held_out]})
    with pytest.raises(DataError, match="data.drop_train_groups"):
        prepare_data(config.data, model_spec(config).preprocessing)
