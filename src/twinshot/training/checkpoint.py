"""Checkpoints of a training run, written atomically.

A run directory holds::

    RUN_DIR/config.toml        the resolved config
    RUN_DIR/metrics.csv        one row every ``log_every`` steps
    RUN_DIR/epochs.csv         one row per epoch (validation accuracy, ...)
    RUN_DIR/best/              the checkpoint with the best validation accuracy
    RUN_DIR/last/              the latest checkpoint, with the trainer state to resume
    RUN_DIR/training.png       loss and validation accuracy (at the end)
    RUN_DIR/summary.json       the outcome

A checkpoint directory holds ``model.safetensors`` + ``model.json`` (loadable with
:func:`twinshot.models.load_model`), ``config.toml``, ``metrics.json`` and, for ``last/``,
``trainer_state.pt`` (optimiser, scheduler, sampler and random states).

Atomicity: a checkpoint is written completely into a hidden temporary directory, then
renamed into place; the previous version is moved aside first and deleted last. A
failure at any point leaves either the old or the new checkpoint, never a mixture, and
:func:`checkpoint_dir` recovers the old one if a crash came between the two renames.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from twinshot.errors import TwinshotError

TRAINER_STATE = "trainer_state.pt"
METRICS = "metrics.json"
CONFIG = "config.toml"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _default_mode(path: str | Path, *, directory: bool = False) -> None:
    """Give a temporary file (0600) or directory (0700) the usual permissions."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        _default_mode(tmp)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_checkpoint(
    run_dir: str | Path,
    name: str,
    model: Any,
    *,
    config_toml: str,
    metrics: dict[str, Any],
    trainer_state: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint ``run_dir/name`` atomically (see the module docstring).

    Args:
        model: a :class:`twinshot.models.SiameseNetwork` with a spec.
        config_toml: the resolved config as TOML text.
        metrics: JSON-ready metrics (step, epoch, validation accuracy...).
        trainer_state: what :meth:`Trainer.state_dict` returns, for ``last/``.
        extra: stored in ``model.json`` (see :func:`twinshot.models.model_metadata`).

    Returns:
        The checkpoint directory.
    """
    from twinshot.models import save_model

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / name
    old = run_dir / f".{name}.old"
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=f".{name}.tmp-"))
    try:
        save_model(model, tmp, extra={**(extra or {}), "metrics": metrics})
        (tmp / CONFIG).write_text(config_toml, encoding="utf-8")
        (tmp / METRICS).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        if trainer_state is not None:
            torch.save(trainer_state, tmp / TRAINER_STATE)
        for f in tmp.iterdir():
            _default_mode(f)
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _default_mode(tmp, directory=True)
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.exists() and old.exists():
            os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint_dir(run_dir: str | Path, name: str) -> Path | None:
    """The checkpoint ``run_dir/name``, recovering it from ``.name.old`` if a crash came
    between the renames; ``None`` when there is none."""
    run_dir = Path(run_dir)
    final, old = run_dir / name, run_dir / f".{name}.old"
    if not final.exists() and old.is_dir():
        os.replace(old, final)
    return final if final.is_dir() else None


def clean_temporaries(run_dir: str | Path) -> None:
    """Remove leftover ``.NAME.tmp-*`` directories of an interrupted write."""
    for p in Path(run_dir).glob(".*.tmp-*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def read_trainer_state(run_dir: str | Path) -> dict[str, Any]:
    """The trainer state of ``run_dir/last``; a one-line error if there is none."""
    last = checkpoint_dir(run_dir, "last")
    if last is None or not (last / TRAINER_STATE).is_file():
        raise TwinshotError(f"{run_dir}: no resumable checkpoint (expected last/{TRAINER_STATE})")
    try:
        return torch.load(last / TRAINER_STATE, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt file: one line, not a traceback
        raise TwinshotError(f"{last / TRAINER_STATE}: cannot read the trainer state ({exc.__class__.__name__})") from None


def read_metrics(checkpoint: str | Path) -> dict[str, Any]:
    """The ``metrics.json`` of a checkpoint directory."""
    return json.loads((Path(checkpoint) / METRICS).read_text())
