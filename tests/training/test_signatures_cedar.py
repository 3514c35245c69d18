"""Training on CEDAR-like data: the cedar_writers relabelling before a split by writer, pairs
and explicit triplets with the writer's forgeries as hard negatives, and the within-group
verification validation metric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinshot.errors import ConfigError, DataError
from twinshot.training import load_config, train
from twinshot.training.data import prepare_data
from twinshot.training.run import model_spec

from tests.data.datasets.test_cedar import fake_cedar

TINY_CEDAR = {
    "data.val": 2,
    "model.encoder_params": {"input_width": 36, "widths": [4, 8, 8], "grid": [1, 2], "hidden": 8, "embedding_dim": 8, "normalize": True},
    "model.preprocessing.size": [24, 36],
    "run.epochs": 1,
    "run.steps_per_epoch": 2,
    "run.time_budget": 0,
    "sampler.batch_size": 8,
    "validation.calibration_pairs": 40,
}


@pytest.fixture(scope="module")
def cedar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_cedar(tmp_path_factory.mktemp("cedar") / "cedar", writers=5, per_writer=4)


def test_split_keeps_a_writer_and_its_forgeries_together(cedar: Path) -> None:
    config = load_config(preset="signatures-cedar", overrides={"data.sources": [str(cedar)], **TINY_CEDAR})
    data = prepare_data(config.data, model_spec(config).preprocessing)
    assert sorted(data.val.group_names) == sorted(set(data.val.group_names)) and len(data.val.group_names) == 2
    assert not set(data.val.group_names) & set(data.train.group_names)
    assert sorted(data.val.class_names) == sorted([w for g in data.val.group_names for w in (g, f"{g}/forged")])
    bad = load_config(preset="signatures-cedar", overrides={"data.sources": [str(cedar)], "data.split_by": "class"})
    with pytest.raises(DataError, match='needs data.split_by="group"'):
        prepare_data(bad.data, model_spec(bad).preprocessing)


@pytest.mark.parametrize(
    "loss", [{"loss.name": "contrastive"}, {"loss.name": "triplet", "loss.params": {"margin": 0.3, "mining": "none"}}]
)
def test_preset_trains_with_hard_negatives_and_verification_validation(cedar: Path, tmp_path: Path, loss: dict) -> None:
    config = load_config(preset="signatures-cedar", overrides={"data.sources": [str(cedar)], **TINY_CEDAR, **loss})
    assert config.validation.metric == "group_verification" and config.sampler.negative_only == "*/forged"
    result = train(config, tmp_path / "run", progress=False)
    assert 0.0 <= result.best_accuracy <= 1.0
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()


def test_unknown_validation_metric(cedar: Path, tmp_path: Path) -> None:
    config = load_config(preset="signatures-cedar", overrides={"data.sources": [str(cedar)], **TINY_CEDAR, "validation.metric": "vibes"})
    with pytest.raises(ConfigError, match="validation.metric must be"):
        train(config, tmp_path / "run", progress=False)


def test_extra_training_identities_join_the_training_part_only(cedar: Path, tmp_path: Path) -> None:
    from tests.data.datasets.test_crossmedia import _fake_dataset

    extra = _fake_dataset(tmp_path / "xm", writers=2, numbers=range(1, 21))
    config = load_config(preset="signatures-cedar", overrides={
        "data.sources": [str(cedar)], **TINY_CEDAR,
        "data.extra_train_sources": [str(extra)], "data.extra_train_relabel": "signatures_writer_name",
    })
    data = prepare_data(config.data, model_spec(config).preprocessing)
    assert "1/name01" in data.train.class_names and "name01" in data.train.group_names
    assert not any("name" in c for c in data.val.class_names) and data.val.n_classes == 4
    assert data.train.n_classes == 3 * 2 + 2 * 10


def test_extra_share_mixes_the_extra_writers_into_each_batch(cedar: Path, tmp_path: Path) -> None:
    from tests.data.datasets.test_crossmedia import _fake_dataset
    from twinshot.training.run import _make_sampler

    extra = _fake_dataset(tmp_path / "xm", writers=2, numbers=range(1, 21))
    overrides = {
        "data.sources": [str(cedar)], **TINY_CEDAR,
        "data.extra_train_sources": [str(extra)], "data.extra_train_relabel": "signatures_writer_name",
    }
    config = load_config(preset="signatures-cedar", overrides={**overrides, "sampler.extra_share": 0.25})
    data = prepare_data(config.data, model_spec(config).preprocessing)
    assert data.extra_classes == {c for c in data.train.class_names if "/name" in c}
    batch = next(iter(_make_sampler(config, "pairs", data.train, data.extra_classes)))
    assert sum("/name" in data.train.class_names[int(c)] for c in data.train.labels[batch.idx1]) == 2  # 8 pairs x 0.25
    assert train(config, tmp_path / "run", progress=False).steps == 2
    plain = load_config(preset="signatures-cedar", overrides={"data.sources": [str(cedar)], **TINY_CEDAR, "sampler.extra_share": 0.25})
    with pytest.raises(ConfigError, match="needs data.extra_train_sources"):
        train(plain, tmp_path / "plain", progress=False)


def test_train_limit_drops_training_writers_only(cedar: Path) -> None:
    overrides = {"data.sources": [str(cedar)], **TINY_CEDAR}
    plain = load_config(preset="signatures-cedar", overrides=overrides)
    full = prepare_data(plain.data, model_spec(plain).preprocessing)
    config = load_config(preset="signatures-cedar", overrides={**overrides, "data.train_limit": 2})
    data = prepare_data(config.data, model_spec(config).preprocessing)
    assert data.val.group_names == full.val.group_names  # the held-out writers do not move
    assert len(data.train.group_names) == 2 and set(data.train.group_names) < set(full.train.group_names)
    assert sorted(data.train.class_names) == sorted(w for g in data.train.group_names for w in (g, f"{g}/forged"))
    with pytest.raises(ConfigError):
        load_config(preset="signatures-cedar", overrides={**overrides, "data.train_limit": "many"})


def test_without_validation_best_is_the_final_model_calibrated_on_training_pairs(cedar: Path, tmp_path: Path) -> None:
    import json

    config = load_config(preset="signatures-cedar", overrides={"data.sources": [str(cedar)], **TINY_CEDAR, "data.val": 0})
    result = train(config, tmp_path / "run", progress=False)  # every writer trains (the 45-writer refit's shape)
    metrics = json.loads((tmp_path / "run" / "best" / "metrics.json").read_text())
    assert metrics["note"] == "no validation set: best/ is the final model" and metrics["step"] == result.steps == 2
    assert result.calibration is not None and result.calibration["pairs"] > 0  # fitted on training writers' pairs


def test_verification_validation_embeds_one_view(cedar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The epoch is chosen on one view, as the preset says; the test-time views come back for
    the head's calibration and the saved model."""
    import twinshot.evaluation.group_verification as gv

    seen: list[list[str]] = []
    real = gv.group_verification_eer

    def spy(model, data, mask):  # type: ignore[no-untyped-def]
        seen.append([list(m.test_views) for m in model.modules() if hasattr(m, "test_views")][0])
        return real(model, data, mask)

    monkeypatch.setattr(gv, "group_verification_eer", spy)
    params = {**TINY_CEDAR["model.encoder_params"], "test_views": ["shift:1"]}
    config = load_config(preset="signatures-cedar", overrides={"data.sources": [str(cedar)], **TINY_CEDAR, "model.encoder_params": params})
    train(config, tmp_path / "run", progress=False)
    assert seen and all(v == [] for v in seen)
    saved = json.loads((tmp_path / "run" / "best" / "model.json").read_text())
    assert saved["spec"]["encoder_params"]["test_views"] == ["shift:1"]
