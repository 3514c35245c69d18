"""Training on one's own folder: sizes checked before the first step (naming the keys),
no directory left that blocks the same --out, the held-out classes printed and recorded,
relative data pinned so `evaluate heldout` finds it from anywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import make_image_folder
from twinshot.cli.main import cli

#: A flat folder like a user's own: 10 classes x 6 images, no groups.
SMALL = [
    "--set", "model.encoder_params={widths = [8, 8], embedding_dim = 16}",
    "--size", "16", "--steps-per-epoch", "2", "--epochs", "1", "--threads", "1",
    "--set", "validation.episodes=5", "--set", "validation.calibration_pairs=40",
    "--set", "validation.within_group=false",
]


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("own") / "myfaces", groups=1, classes_per_group=10,
                             per_class=6, size=16, nested=False)


def test_sizes_are_checked_before_the_first_step_naming_the_keys(faces: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    # 5 of 10 classes held out: the 20-way preset sampler and 10-way validation both fail, at once
    code = cli(["train", "--preset", "faces-orl", "--data", str(faces), "--out", str(out), "--quiet",
                "--set", "data.val=5", *SMALL])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "sampler.n_way = 20" in err and "--set sampler.n_way=5" in err
    assert "validation.n_way = 10" in err and "--set validation.n_way=5" in err and "data.val" in err
    assert not out.exists()  # nothing written, nothing blocks the same --out


def test_fitting_sizes_train_and_record_the_held_out_classes(faces: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.toml").write_text("# left by a run that failed before its first checkpoint\n")
    monkeypatch.chdir(faces.parent)
    args = ["train", "--preset", "faces-orl", "--data", "myfaces", "--out", str(out), "--set", "data.val=5",
            "--set", "sampler.n_way=5", "--set", "validation.n_way=5", *SMALL]
    assert cli(args) == 0, capsys.readouterr()
    err = capsys.readouterr().err
    assert "held out 5 classes for validation: class" in err, err  # one line, not wrapped at 80 columns
    extra = json.loads((out / "best" / "model.json").read_text())["extra"]["data"]
    assert extra["val_groups"] == [] and len(extra["val_class_names"]) == 5
    assert extra["val_class_names"][0].startswith("class")
    # the relative --data is pinned, so evaluate heldout works from another directory
    monkeypatch.chdir(tmp_path)
    assert cli(["evaluate", "heldout", str(out), "--episodes", "5", "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["n_way"] == 5


def test_classes_with_one_photo_are_left_out_of_validation_episodes(tmp_path: Path, capsys) -> None:
    # like LFW: many people have a single photo; the held-out ones must not crash validation
    data = make_image_folder(tmp_path / "people", groups=1, classes_per_group=12, per_class=4, size=16, nested=False)
    for k, cls in enumerate(sorted(data.iterdir())):
        if k % 2:
            for extra in sorted(cls.iterdir())[1:]:
                extra.unlink()
    out = tmp_path / "run"
    args = ["train", "--preset", "faces-orl", "--data", str(data), "--out", str(out), "--set", "data.val=6",
            "--set", "sampler.n_way=3", "--set", "sampler.n_query=1", "--set", "validation.n_way=2", *SMALL]
    assert cli(args) == 0, capsys.readouterr().err
    assert (out / "best" / "model.json").exists()
    capsys.readouterr()
    assert cli(["evaluate", "heldout", str(out), "--episodes", "5", "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["n_way"] == 2


def test_a_finished_run_is_not_overwritten(faces: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    (out / "last").mkdir(parents=True)
    (out / "config.toml").write_text("")
    assert cli(["train", "--data", str(faces), "--out", str(out), "--quiet", *SMALL]) == 2
    assert f"--resume {out}" in capsys.readouterr().err


def test_default_data_is_said_aloud(tmp_path: Path, capsys) -> None:
    # no preset, no --data: the note names Omniglot (the run itself may not find the data here)
    cli(["train", "--out", str(tmp_path / "run"), "--steps-per-epoch", "0"])
    assert "training on the default data, Omniglot" in capsys.readouterr().err


def test_a_flat_folder_under_a_group_split_says_to_split_by_class(faces: Path, tmp_path: Path, capsys) -> None:
    # the docs' fine-tune command --configs a shipped Omniglot config (split_by = "group",
    # val = 5 alphabets); a flat folder of classes is one group
    code = cli(["train", "--preset", "omniglot", "--data", str(faces), "--out", str(tmp_path / "run"), "--quiet", *SMALL])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "data.val / data.split_by = 'group'" in err and "1 group(s) of 10 classes" in err
    assert "--set data.split_by=class" in err


def test_one_class_and_one_image_per_class_name_the_real_fix(tmp_path: Path, capsys) -> None:
    one_class = make_image_folder(tmp_path / "one", groups=1, classes_per_group=1, per_class=6, size=16, nested=False)
    code = cli(["train", "--preset", "faces-orl", "--data", str(one_class), "--out", str(tmp_path / "a"), "--quiet", *SMALL])
    err = capsys.readouterr().err
    assert code == 2 and "training needs at least 2 class folders" in err, err
    single = make_image_folder(tmp_path / "single", groups=1, classes_per_group=10, per_class=1, size=16, nested=False)
    code = cli(["train", "--preset", "faces-orl", "--data", str(single), "--out", str(tmp_path / "b"), "--quiet",
                "--set", "data.val=5", *SMALL])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    # not "try --set sampler.n_way=2": no class has the 2 images any batch needs
    assert "try --set" not in err and "no class has more than 1 image(s)" in err and "add images" in err


def test_within_group_validation_under_a_class_split_names_the_classes_not_a_group(faces: Path, tmp_path: Path, capsys) -> None:
    args = [a for a in SMALL if a != "validation.within_group=false"][:-1]  # keep within-group validation
    code = cli(["train", "--preset", "faces-orl", "--data", str(faces), "--out", str(tmp_path / "run"), "--quiet",
                "--set", "data.val=5", "--set", "data.split_by=class", "--set", "validation.within_group=true", *args])
    err = capsys.readouterr().err
    assert code == 2 and "validation.n_way = 10 but one group of the held-out classes has only 5" in err, err
    assert "one held-out group" not in err
