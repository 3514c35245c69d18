from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from twinshot.data.images import Preprocessing
from twinshot.models import ModelSpec, build_model, load_model
from twinshot.training import checkpoint as ckpt


def _model(seed: int):
    torch.manual_seed(seed)
    return build_model(ModelSpec("compact", {"widths": [4, 4]}, "euclidean", {}, Preprocessing(size=(8, 8))))


def _weights(directory: Path) -> bytes:
    return (directory / "model.safetensors").read_bytes()


def test_write_and_load(tmp_path: Path) -> None:
    model = _model(0)
    path = ckpt.write_checkpoint(tmp_path, "last", model, config_toml="[run]\n", metrics={"step": 3},
                                 trainer_state={"x": torch.arange(3)})
    assert sorted(p.name for p in path.iterdir()) == ["config.toml", "metrics.json", "model.json", "model.safetensors", "trainer_state.pt"]
    assert ckpt.read_metrics(path)["step"] == 3
    loaded = load_model(tmp_path)  # a run directory resolves to its checkpoint
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(ckpt.read_trainer_state(tmp_path)["x"], torch.arange(3))
    assert not list(tmp_path.glob(".*"))  # no temporaries left


def test_failed_write_leaves_old_checkpoint_and_no_partial_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt.write_checkpoint(tmp_path, "last", _model(0), config_toml="", metrics={"step": 1}, trainer_state={})
    before = _weights(tmp_path / "last")

    def broken_save(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.write_checkpoint(tmp_path, "last", _model(1), config_toml="", metrics={"step": 2}, trainer_state={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    assert _weights(tmp_path / "last") == before
    assert ckpt.read_metrics(tmp_path / "last")["step"] == 1


def test_failed_first_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ckpt.torch, "save", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        ckpt.write_checkpoint(tmp_path, "last", _model(0), config_toml="", metrics={}, trainer_state={})
    assert list(tmp_path.iterdir()) == []


def test_crash_between_renames_is_recovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt.write_checkpoint(tmp_path, "best", _model(0), config_toml="", metrics={"step": 1})
    before = _weights(tmp_path / "best")
    real_replace = os.replace
    calls = []

    def flaky_replace(src: object, dst: object) -> None:
        if Path(dst).parent == tmp_path:  # the checkpoint renames, not the files inside it
            calls.append(Path(dst).name)
            if len(calls) == 2:  # best -> .best.old done; .best.tmp-* -> best fails
                raise OSError("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="power cut"):
        ckpt.write_checkpoint(tmp_path, "best", _model(1), config_toml="", metrics={"step": 2})
    monkeypatch.setattr(ckpt.os, "replace", real_replace)
    # the old checkpoint was put back in place by the failing writer
    assert calls == [".best.old", "best", "best"]  # the third puts the old one back
    assert _weights(tmp_path / "best") == before
    assert not list(tmp_path.glob(".best.tmp-*"))


def test_checkpoint_dir_recovers_old(tmp_path: Path) -> None:
    ckpt.write_checkpoint(tmp_path, "last", _model(0), config_toml="", metrics={"step": 5}, trainer_state={})
    os.replace(tmp_path / "last", tmp_path / ".last.old")  # as if killed between the renames
    assert ckpt.checkpoint_dir(tmp_path, "last") == tmp_path / "last"
    assert ckpt.read_metrics(tmp_path / "last")["step"] == 5
    assert ckpt.checkpoint_dir(tmp_path, "best") is None


def test_missing_trainer_state_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ckpt.TwinshotError, match="no resumable checkpoint"):
        ckpt.read_trainer_state(tmp_path)
