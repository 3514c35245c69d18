"""``run.init_from``: a run that starts from another run's (or a shipped model's)
weights, with a fresh optimiser; the source recorded; clear one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.training._helpers import tiny_config
from twinshot.errors import ConfigError
from twinshot.training import train
from twinshot.training.init_from import file_sha256
from twinshot.training.trainer import Trainer


@pytest.fixture(scope="module")
def source(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("src") / "run"
    train(tiny_config(tiny_data, **{"loss.name": "triplet", "loss.params": {"mining": "batch_hard"}, "sampler.n_classes": 4}), run, progress=False)
    return run


def _config(tiny_data: Path, **overrides):
    return tiny_config(tiny_data, **{"loss.name": "triplet", "loss.params": {"mining": "batch_hard"}, "sampler.n_classes": 4, **overrides})


def test_starts_from_the_source_weights_and_records_it(tiny_data: Path, source: Path, tmp_path: Path, monkeypatch) -> None:
    start: dict[str, torch.Tensor] = {}
    fit = Trainer.fit

    def spy(self, *args, **kwargs):
        if not start:  # the first fit: the new run (a later one resumes it)
            assert self.state.step == 0
            start.update({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", spy)
    run = tmp_path / "ft"
    config = _config(tiny_data, **{"run.init_from": str(source), "run.seed": 7, "optimizer.lr": 1e-3, "run.epochs": 1})
    result = train(config, run, progress=False)
    assert result.stopped == "completed"
    best = load_file(str(source / "best" / "model.safetensors"))
    assert start.keys() == best.keys()
    for k in best:
        assert torch.equal(start[k], best[k]), k
    record = json.loads((run / "best" / "model.json").read_text())["extra"]["init_from"]
    assert record == {"ref": str(source), "path": str(source / "best"), "sha256": file_sha256(source / "best" / "model.safetensors")}
    assert 'init_from = "' in (run / "config.toml").read_text()
    # resuming keeps the record
    train(None, run, resume=True, overrides={"run.epochs": 2}, progress=False)
    assert json.loads((run / "last" / "model.json").read_text())["extra"]["init_from"] == record


def test_a_different_model_is_refused_naming_the_field(tiny_data: Path, source: Path, tmp_path: Path) -> None:
    config = _config(tiny_data, **{"run.init_from": str(source), "model.encoder_params": {"widths": [8, 16], "embedding_dim": 16, "dropout": 0.2}})
    with pytest.raises(ConfigError, match=r"run.init_from: model.encoder_params.widths differs: this run's config has \[8, 16\], .* has \[8, 8\]") as info:
        train(config, tmp_path / "bad", progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "bad").exists()
    config = _config(tiny_data, **{"run.init_from": str(source), "model.preprocessing.size": [20, 20]})
    with pytest.raises(ConfigError, match=r"model.preprocessing.size differs"):
        train(config, tmp_path / "bad2", progress=False)


def test_an_unknown_source_is_refused(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"run.init_from: model 'no-such-model' not found: not a path, nor a shipped model \(.*omniglot"):
        train(_config(tiny_data, **{"run.init_from": "no-such-model"}), tmp_path / "x", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="run.init_from: .*empty: not a model checkpoint or run directory"):
        train(_config(tiny_data, **{"run.init_from": str(tmp_path / "empty")}), tmp_path / "y", progress=False)


def test_a_shipped_model_must_match_too(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"run.init_from: model.encoder_params.* differs: .* 'omniglot' .*\(start from its settings with --config .*omniglot.config\.toml\)$"):
        train(_config(tiny_data, **{"run.init_from": "omniglot"}), tmp_path / "z", progress=False)


def test_init_from_cannot_change_on_resume(tiny_data: Path, source: Path) -> None:
    with pytest.raises(ConfigError, match="cannot change run.init_from when resuming"):
        train(None, source, resume=True, overrides={"run.init_from": "omniglot", "run.epochs": 3}, progress=False)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"sampler.within_group_share": 1.5}, r"sampler.within_group_share must be in \[0, 1\], got 1.5"),
        ({"sampler.within_group_share": -0.5}, r"sampler.within_group_share must be in \[0, 1\], got -0.5"),
        ({"sampler.within_group_share": 0.5, "sampler.within_group": True}, "sampler.within_group = true means sampler.within_group_share = 1"),
        ({"sampler.within_group_share": 0.5, "loss.name": "prototypical", "loss.params": {}}, "sampler.within_group_share is for P x K batches"),
    ],
)
def test_within_group_share_is_checked_before_loading(tmp_path: Path, overrides: dict, message: str) -> None:
    config = _config(tmp_path / "no-such-data", **overrides)  # the data would fail later
    with pytest.raises(ConfigError, match=message):
        train(config, tmp_path / "run", progress=False)


def test_a_run_with_a_within_group_share_trains(tiny_data: Path, tmp_path: Path) -> None:
    config = _config(tiny_data, **{"sampler.within_group_share": 0.5, "sampler.n_classes": 3, "run.epochs": 1})
    assert train(config, tmp_path / "run", progress=False).stopped == "completed"
    assert "within_group_share = 0.5" in (tmp_path / "run" / "config.toml").read_text()
