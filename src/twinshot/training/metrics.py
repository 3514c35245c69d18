"""Metrics of a run: ``metrics.csv`` (every ``log_every`` steps), ``epochs.csv`` (every
epoch) and, if the ``tensorboard`` package is importable, TensorBoard event files in
``RUN_DIR/tensorboard``."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

STEP_FIELDS = ("step", "epoch", "loss", "lr", "images_per_s", "elapsed_s")
EPOCH_FIELDS = ("epoch", "step", "train_loss", "val_accuracy", "val_ci95", "val_error", "images_per_s", "elapsed_s", "best")


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


class MetricsLogger:
    """Appends rows to the run's CSV files (and TensorBoard when available).

    Args:
        run_dir: the run directory.
        resume_step: when resuming, rows logged after this step (by a run that died
            after its last checkpoint) are dropped, so the files match the checkpoint.
        tensorboard: write TensorBoard events if the package is installed.
    """

    def __init__(self, run_dir: str | Path, *, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.steps_path = self.run_dir / "metrics.csv"
        self.epochs_path = self.run_dir / "epochs.csv"
        if resume_step is None:
            for path, names in ((self.steps_path, STEP_FIELDS), (self.epochs_path, EPOCH_FIELDS)):
                with open(path, "w", newline="") as f:
                    csv.writer(f).writerow(names)
        else:
            self._truncate(self.steps_path, STEP_FIELDS, resume_step)
            self._truncate(self.epochs_path, EPOCH_FIELDS, resume_step)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except Exception:  # tensorboard not installed
                self._tb = None

    @staticmethod
    def _truncate(path: Path, names: tuple[str, ...], step: int) -> None:
        rows = read_csv(path) if path.is_file() else []
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(names)
            for row in rows:
                if int(float(row["step"])) <= step:
                    w.writerow([row.get(n, "") for n in names])

    def log_step(self, **values: Any) -> None:
        with open(self.steps_path, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(values.get(n, "")) for n in STEP_FIELDS])
        if self._tb is not None:
            for k in ("loss", "lr", "images_per_s"):
                self._tb.add_scalar(f"train/{k}", values[k], values["step"])

    def log_epoch(self, **values: Any) -> None:
        with open(self.epochs_path, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(values.get(n, "")) for n in EPOCH_FIELDS])
        if self._tb is not None and values.get("val_accuracy") is not None and not math.isnan(values["val_accuracy"]):
            self._tb.add_scalar("val/accuracy", values["val_accuracy"], values["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a metrics CSV as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
