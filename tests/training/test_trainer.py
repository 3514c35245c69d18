"""The training loop on a tiny synthetic set: exact resumption, reproducibility, early
stopping, the time budget, Ctrl-C, and what a run directory holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.training._helpers import tiny_config
from twinshot.errors import TwinshotError
from twinshot.models import load_model, model_metadata
from twinshot.training import train
from twinshot.training.metrics import read_csv


def _weights(run: Path, name: str = "last") -> dict[str, torch.Tensor]:
    return load_file(str(run / name / "model.safetensors"))


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class InterruptAt:
    """Raises KeyboardInterrupt (as Ctrl-C would) after a given step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer) -> None:
        if trainer.state.step == self.step:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def reference(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of 2 epochs x 3 steps."""
    run = tmp_path_factory.mktemp("ref") / "run"
    result = train(tiny_config(tiny_data), run, progress=False)
    assert result.stopped == "completed" and result.steps == 6 and result.epochs == 2
    return run


def test_run_directory_contents(reference: Path) -> None:
    names = {p.name for p in reference.iterdir()}
    assert {"config.toml", "metrics.csv", "epochs.csv", "best", "last", "summary.json", "training.png"} <= names
    assert not [n for n in names if n.startswith(".")]
    epochs = read_csv(reference / "epochs.csv")
    assert [int(r["epoch"]) for r in epochs] == [1, 2]
    assert all(0.0 <= float(r["val_accuracy"]) <= 1.0 for r in epochs)
    assert [int(r["step"]) for r in read_csv(reference / "metrics.csv")] == [1, 2, 3, 4, 5, 6]
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["images_per_second"] > 0
    # best/ is a loadable model with calibrated probabilities and its metrics
    model = load_model(reference)
    meta = model_metadata(reference)
    assert meta["metrics"]["best_accuracy"] == summary["best_accuracy"]
    cal = meta["metrics"]["calibration"]
    assert float(model.head.scale.detach()) == pytest.approx(cal["scale"]) and cal["pairs"] == 60
    x = model.preprocessing.to_float(torch.zeros(2, 1, 16, 16, dtype=torch.uint8))
    p = model.similarity(x[:1], x[1:])
    assert 0.0 <= float(p.detach()) <= 1.0


def test_resume_at_epoch_boundary_is_bit_exact(tiny_data: Path, tmp_path: Path, reference: Path) -> None:
    run = tmp_path / "run"
    first = train(tiny_config(tiny_data), run, progress=False, callbacks=[InterruptAt(3)])
    assert first.stopped == "interrupted" and first.steps == 3
    assert not (run / "training.png").exists()
    second = train(None, run, resume=True, progress=False)
    assert second.stopped == "completed" and second.steps == 6
    _assert_same_weights(_weights(run), _weights(reference))
    _assert_same_weights(_weights(run, "best"), _weights(reference, "best"))
    ref_rows = read_csv(reference / "epochs.csv")
    rows = read_csv(run / "epochs.csv")
    assert [r["val_accuracy"] for r in rows] == [r["val_accuracy"] for r in ref_rows]
    assert [r["loss"] for r in read_csv(run / "metrics.csv")] == [r["loss"] for r in read_csv(reference / "metrics.csv")]


def test_resume_inside_an_epoch_is_bit_exact(tiny_data: Path, tmp_path: Path, reference: Path) -> None:
    run = tmp_path / "run"
    assert train(tiny_config(tiny_data), run, progress=False, callbacks=[InterruptAt(4)]).steps == 4
    assert train(None, run, resume=True, progress=False).steps == 6
    _assert_same_weights(_weights(run), _weights(reference))


def test_same_seed_same_weights_other_seed_differs(tiny_data: Path, tmp_path: Path, reference: Path) -> None:
    again = tmp_path / "again"
    train(tiny_config(tiny_data), again, progress=False)
    _assert_same_weights(_weights(again), _weights(reference))
    other = tmp_path / "other"
    train(tiny_config(tiny_data, **{"run.seed": 1, "run.epochs": 1}), other, progress=False)
    w0, w1 = _weights(reference), _weights(other)
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)


def test_early_stopping(tiny_data: Path, tmp_path: Path) -> None:
    # A learning rate so small nothing changes: the accuracy never improves after epoch 1.
    config = tiny_config(tiny_data, **{"optimizer.lr": 1e-20, "run.epochs": 6, "run.steps_per_epoch": 1,
                                       "early_stopping.patience": 2, "augmentation.name": "none"})
    result = train(config, tmp_path / "run", progress=False)
    assert result.stopped == "early_stopping"
    assert result.epochs == 3 and result.best_epoch == 1


def test_time_budget_stops_and_saves(tiny_data: Path, tmp_path: Path) -> None:
    result = train(tiny_config(tiny_data, **{"run.time_budget": 1e-6}), tmp_path / "run", progress=False)
    assert result.stopped == "time_budget" and result.steps == 1 and result.epochs == 1
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()


def test_refuses_existing_run_and_missing_resume(tiny_data: Path, reference: Path, tmp_path: Path) -> None:
    with pytest.raises(TwinshotError, match="already holds a run; continue it with --resume"):
        train(tiny_config(tiny_data), reference, progress=False)
    with pytest.raises(TwinshotError, match="nothing to resume"):
        train(None, tmp_path, resume=True, progress=False)
    with pytest.raises(TwinshotError, match="cannot change model.head when resuming"):
        train(None, reference, resume=True, overrides={"model.head": "cosine"}, progress=False)


@pytest.mark.parametrize("loss,params", [("contrastive", {"margin": 1.0}), ("triplet", {"margin": 0.2, "mining": "batch_hard"}),
                                         ("bce", {})])
def test_other_losses_train(tiny_data: Path, tmp_path: Path, loss: str, params: dict) -> None:
    overrides = {"loss.name": loss, "loss.params": params, "run.epochs": 1, "run.steps_per_epoch": 2,
                 "sampler.batch_size": 8, "sampler.n_classes": 4, "sampler.n_per_class": 3}
    if loss == "bce":
        overrides["model.head"] = "weighted_l1"
    result = train(tiny_config(tiny_data, **overrides), tmp_path / "run", progress=False)
    assert result.steps == 2 and 0.0 <= result.best_accuracy <= 1.0
    assert (result.calibration is None) == (loss == "bce")


def test_evaluate_heldout_reuses_the_runs_split(reference: Path) -> None:
    from twinshot.training import evaluate_heldout

    result = evaluate_heldout(reference, episodes=20, seed=1)
    assert result.n_way == 4 and result.within_group and result.episodes == 20
    assert 0.0 <= result.accuracy <= 1.0


def test_cli_evaluate_heldout_json(reference: Path, capsys) -> None:
    from twinshot.cli.main import cli
    from twinshot.training import evaluate_heldout

    assert cli(["evaluate", "heldout", str(reference), "--episodes", "20", "--seed", "1", "--json"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["accuracy"] == evaluate_heldout(reference, episodes=20, seed=1).accuracy
    assert out["n_way"] == 4 and out["episodes"] == 20 and out["within_group"]


def test_channels_last_and_bf16_train_close_to_fp32(tiny_data: Path, tmp_path: Path) -> None:
    """Channels-last batches (same arithmetic up to rounding) and bf16 mixed precision (the
    encoder under autocast) start from the same loss as float32 (no dropout: its mask would
    land on other elements in another memory format); weights stay float32 and are saved
    contiguous; a bf16 run is reproducible and resumes bit-exactly."""
    base = {"model.encoder_params": {"widths": [8, 8], "embedding_dim": 16, "dropout": 0.0}}
    runs = {"fp32": {}, "cl": {"run.channels_last": True}, "bf16": {"run.precision": "bf16", "run.channels_last": True}}
    first_loss = {}
    for name, extra in runs.items():
        train(tiny_config(tiny_data, **base, **extra), tmp_path / name, progress=False)
        first_loss[name] = float(read_csv(tmp_path / name / "metrics.csv")[0]["loss"])
        for v in _weights(tmp_path / name).values():
            assert v.dtype != torch.bfloat16 and v.is_contiguous()
    assert first_loss["cl"] == pytest.approx(first_loss["fp32"], rel=1e-4)
    assert first_loss["bf16"] == pytest.approx(first_loss["fp32"], rel=3e-2)
    assert model_metadata(tmp_path / "bf16" / "best")["precision"] == "bf16"
    load_model(tmp_path / "bf16" / "best")  # loads like any checkpoint
    again = tmp_path / "bf16-resumed"
    config = tiny_config(tiny_data, **base, **runs["bf16"])
    train(config, again, progress=False, callbacks=[InterruptAt(4)])
    train(None, again, resume=True, progress=False)
    _assert_same_weights(_weights(again), _weights(tmp_path / "bf16"))


def test_unknown_precision_is_rejected_before_loading(tmp_path: Path) -> None:
    from twinshot.errors import ConfigError
    from twinshot.training import load_config

    config = load_config(overrides={"data.sources": [str(tmp_path / "missing")], "run.precision": "fp8"})
    with pytest.raises(ConfigError, match="run.precision must be one of fp32, bf16, auto, got 'fp8'"):
        train(config, tmp_path / "run", progress=False)


def test_auto_precision_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import twinshot.training.batches as batches

    monkeypatch.setattr(batches, "native_bf16", lambda: True)
    assert batches.resolve_precision("auto") == "bf16"
    monkeypatch.setattr(batches, "native_bf16", lambda: False)
    assert batches.resolve_precision("auto") == "fp32" and batches.resolve_precision("bf16") == "bf16"


def test_margin_loss_trains_its_class_weights_and_resumes_bit_exact(tiny_data: Path, tmp_path: Path) -> None:
    """ArcFace's class weights are bound to the training classes, optimised with the model,
    and saved in the trainer state, so an interrupted run resumes to the same weights."""
    overrides = {"loss.name": "arcface", "loss.params": {"margin": 10.0, "scale": 16.0}, "sampler.n_classes": 6}
    ref = tmp_path / "ref"
    assert train(tiny_config(tiny_data, **overrides), ref, progress=False).steps == 6
    state = torch.load(ref / "last" / "trainer_state.pt", weights_only=False)
    w = state["loss"]["W"]
    assert w.ndim == 2 and w.shape[1] >= 2
    assert any(len(g["params"]) for g in state["optimizer"]["param_groups"])
    run = tmp_path / "run"
    assert train(tiny_config(tiny_data, **overrides), run, progress=False, callbacks=[InterruptAt(4)]).steps == 4
    assert train(None, run, resume=True, progress=False).steps == 6
    _assert_same_weights(_weights(run), _weights(ref))
    after = torch.load(run / "last" / "trainer_state.pt", weights_only=False)["loss"]["W"]
    assert torch.equal(after, w)


def test_open_set_on_the_runs_held_out_classes(reference: Path, capsys) -> None:
    """``evaluate open-set --heldout`` rebuilds the run's split (1 held-out group of 6 classes)."""
    from twinshot.cli.main import cli

    assert cli(["evaluate", "open-set", str(reference), "--heldout", "--enrolled", "3", "--seeds", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["heldout"] and out["n_classes"] == 6 and out["n_mated"] == 15 and out["n_nonmated"] == 18
    assert cli(["evaluate", "open-set", str(reference), "--enrolled", "3"]) == 2
    assert "give DATA" in capsys.readouterr().err
