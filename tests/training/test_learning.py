"""Tests that notice when training or its evaluation silently does nothing (issue 11):
a short run on real Omniglot must beat the same run with a learning rate of ~0 by a clear
margin (deleting ``optimizer.step()`` fails it), and ``evaluate_heldout`` must measure the
run's held-out classes, not its training classes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training._helpers import tiny_config
from twinshot.training import evaluate_heldout, load_config, train


def omniglot_config(zip_path: Path, lr: float, steps: int):
    """A small triplet run on one Omniglot background zip, one alphabet held out; fp32 and
    one thread (so an AMD and an Intel AMX CPU run the same arithmetic)."""
    return load_config(overrides={
        "data.sources": [str(zip_path)], "data.split_by": "group", "data.val": 1, "data.rotations": [],
        "model.encoder": "compact", "model.encoder_params": {"widths": [16, 16, 16], "embedding_dim": 32, "normalize": True},
        "model.head": "euclidean", "model.preprocessing.size": [28, 28], "model.preprocessing.invert": True,
        "loss.name": "triplet", "loss.params": {"margin": 0.2, "mining": "batch_hard"},
        "sampler.n_classes": 16, "sampler.n_per_class": 4, "augmentation.name": "none",
        "optimizer.lr": lr, "run.epochs": 1, "run.steps_per_epoch": steps, "run.threads": 1, "run.precision": "fp32",
        "validation.n_way": 5, "validation.episodes": 200, "validation.calibration_pairs": 200, "validation.within_group": True,
    })


@pytest.mark.slow
def test_a_short_run_on_omniglot_beats_the_untrained_model(omniglot_dir: Path, tmp_path: Path) -> None:
    # Measured (2-core AMD EPYC, fp32, 150 steps, 200 seeded 5-way 1-shot within-alphabet
    # episodes on the held-out alphabet): ~0.44 untouched, ~0.83 trained.
    zip_path = omniglot_dir / "images_background_small1.zip"
    untouched = train(omniglot_config(zip_path, 1e-20, 150), tmp_path / "untouched", progress=False)
    trained = train(omniglot_config(zip_path, 3e-3, 150), tmp_path / "trained", progress=False)
    assert untouched.steps == trained.steps == 150
    assert trained.best_accuracy >= untouched.best_accuracy + 0.2, (trained.best_accuracy, untouched.best_accuracy)
    assert trained.best_accuracy >= 0.6


def test_evaluate_heldout_measures_the_held_out_classes(tiny_data: Path, tmp_path: Path) -> None:
    from twinshot.evaluation.episodes import evaluate_episodes
    from twinshot.models import load_model
    from twinshot.training.data import prepare_data

    config = tiny_config(tiny_data, **{"run.epochs": 1, "run.steps_per_epoch": 2})
    run = tmp_path / "run"
    train(config, run, progress=False)
    model = load_model(run)
    data = prepare_data(load_config(run / "config.toml", overrides={"data.rotations": []}).data, model.preprocessing, progress=False)
    assert set(data.val.class_names).isdisjoint(data.train.class_names)
    v = config.validation
    protocol = dict(n_way=v.n_way, n_shot=v.n_shot, n_query=v.n_query, episodes=30, seed=1, within_group=v.within_group)
    on_val = evaluate_episodes(model, data.val, **protocol)
    on_train = evaluate_episodes(model, data.train, **protocol)
    assert on_val.accuracies != on_train.accuracies  # the two splits give different episodes
    got = evaluate_heldout(run, episodes=30, seed=1)
    assert got.accuracies == on_val.accuracies and got.accuracy == on_val.accuracy
