from __future__ import annotations

from pathlib import Path

import pytest

from twinshot.errors import ConfigError
from twinshot.training import TrainConfig, apply_overrides, load_config, parse_duration, preset_names, save_config
from twinshot.training import toml


def test_defaults_round_trip_through_toml(tmp_path: Path) -> None:
    config = TrainConfig()
    path = save_config(config, tmp_path / "config.toml")
    assert load_config(path) == config


def test_changed_config_round_trips(tmp_path: Path) -> None:
    config = apply_overrides(
        TrainConfig(),
        {
            "data.sources": ["a.zip", "dir with space/b"],
            "data.rotations": [90, 180, 270],
            "model.encoder_params": {"widths": [96, 96, 96, 96], "normalize": True},
            "model.preprocessing.size": [56, 56],
            "loss.name": "triplet",
            "loss.params": {"margin": 0.25, "mining": "semi_hard"},
            "optimizer.lr": 3e-4,
            "run.time_budget": "25m",
        },
    )
    assert config.run.time_budget == 1500.0
    assert config.model.preprocessing.size == (56, 56)
    assert config.data.sources == ("a.zip", "dir with space/b")
    text = config.to_toml()
    assert toml.loads(text)["model"]["encoder_params"] == {"widths": [96, 96, 96, 96], "normalize": True}
    save_config(config, tmp_path / "c.toml")
    assert load_config(tmp_path / "c.toml") == config


def test_writer_round_trips_awkward_values() -> None:
    data = {"top": 1, "t": {"s": 'quote " and \\ and ü\n', "f": 1e-5, "neg": -0.0, "big": 1e300, "inf": float("inf"),
                             "l": [], "nested": {"a b": [1, 2], "x": False}}}
    assert toml.loads(toml.dumps(data)) == data


def test_unknown_section_lists_valid_ones(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[trainer]\nepochs = 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "bad.toml" in msg and "'trainer'" in msg and "data, model, loss" in msg
    assert "\n" not in msg


def test_unknown_key_in_section_lists_valid_keys(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[run]\nepoch = 3\n")
    with pytest.raises(ConfigError, match=r"run\.epoch.*valid: epochs, steps_per_epoch, time_budget"):
        load_config(path)


def test_unknown_override_keys() -> None:
    with pytest.raises(ConfigError, match=r"'optimiser'.*valid: data, model"):
        load_config(overrides=["optimiser.lr=0.1"])
    with pytest.raises(ConfigError, match=r"optimizer\.rate.*valid: name, lr"):
        load_config(overrides=["optimizer.rate=0.1"])
    with pytest.raises(ConfigError, match=r"model\.preprocessing\.sise.*valid: size, channels"):
        load_config(overrides={"model.preprocessing.sise": [3, 3]})
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        apply_overrides(TrainConfig(), ["run.epochs"])


def test_set_values_are_parsed_as_toml() -> None:
    config = load_config(overrides=["run.epochs=3", "optimizer.lr=1e-3", "run.time_budget=90s",
                                    "model.encoder_params.widths=[32,32]", "augmentation.name=koch_affine",
                                    "validation.within_group=false"])
    assert config.run.epochs == 3 and config.optimizer.lr == 1e-3 and config.run.time_budget == 90
    assert config.model.encoder_params == {"widths": [32, 32]}
    assert config.augmentation.name == "koch_affine" and config.validation.within_group is False


def test_type_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"run\.epochs: expected an integer"):
        load_config(overrides={"run.epochs": "many"})
    with pytest.raises(ConfigError, match=r"validation\.within_group: expected true or false"):
        load_config(overrides={"validation.within_group": 1})
    with pytest.raises(ConfigError, match=r"model\.preprocessing\.size: expected 2 values"):
        load_config(overrides={"model.preprocessing.size": [1, 2, 3]})


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[run\n")
    with pytest.raises(ConfigError, match="broken.toml: not valid TOML"):
        load_config(path)


@pytest.mark.parametrize("text,seconds", [("25m", 1500), ("1h", 3600), ("1h30m", 5400), ("90s", 90), ("120", 120), (45, 45)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_duration() -> None:
    with pytest.raises(ConfigError, match="not a duration"):
        parse_duration("soon")


def test_presets_load_and_file_overrides_preset(tmp_path: Path) -> None:
    assert {"omniglot", "omniglot-minimal"} <= set(preset_names())
    for name in preset_names():
        load_config(preset=name)
    path = tmp_path / "mine.toml"
    path.write_text("[run]\nepochs = 1\n")
    config = load_config(path, preset="omniglot", overrides=["run.seed=7"])
    assert config.run.epochs == 1 and config.run.seed == 7
    assert config.loss.name == load_config(preset="omniglot").loss.name
    with pytest.raises(ConfigError, match="unknown preset 'nope'; valid: .*omniglot"):
        load_config(preset="nope")
