"""The training loop: generic over the model, the loss, the sampler and the augmentation.

One optimiser step is: a batch of indices from the sampler, the images indexed out of the
in-memory uint8 tensor, converted and augmented as one batch, one forward pass through
the encoder, the loss, backward, optimiser and scheduler steps (see
:mod:`twinshot.training.batches`). Every ``steps_per_epoch`` steps the trainer validates
(N-way one-shot accuracy on held-out classes), keeps the best and the last checkpoint,
and stops early when the accuracy has not improved for ``patience`` epochs or when the
wall-clock budget is spent.

Exact resumption: ``last/trainer_state.pt`` holds the optimiser, scheduler, sampler (as
it was at the start of the current epoch, plus the number of steps already taken in it)
and random-generator states, so a resumed run produces bit-for-bit the weights of an
uninterrupted one. Ctrl-C is deferred to the end of the current step, then the trainer
writes ``last/`` and stops; a second Ctrl-C aborts at once.
"""

from __future__ import annotations

import copy
import json
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import nn

from twinshot.errors import TwinshotError
from twinshot.training.batches import BatchContext, StepFunction
from twinshot.training.checkpoint import write_checkpoint
from twinshot.training.config import TrainConfig
from twinshot.training.metrics import MetricsLogger
from twinshot.training.progress import Reporter, SilentReporter

#: ``validate(model) -> (accuracy, ci95)``
Validator = Callable[[nn.Module], "tuple[float, float]"]


class Sampler(Protocol):
    """What the trainer needs of a sampler: iterating gives one epoch of batches, and its
    state (taken between epochs) can be saved and restored."""

    def __iter__(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Callback(Protocol):
    """Hooks called by :meth:`Trainer.fit`; either may raise ``KeyboardInterrupt`` to
    interrupt the run as Ctrl-C would."""

    def on_step_end(self, trainer: Trainer) -> None: ...

    def on_epoch_end(self, trainer: Trainer) -> None: ...


@dataclass
class TrainState:
    """Progress of a run, saved in ``last/trainer_state.pt``.

    Attributes:
        step: optimiser steps done.
        epoch: epochs completed.
        step_in_epoch: steps done in the current (unfinished) epoch.
        best_accuracy, best_ci95, best_epoch, best_step: the best validation so far
            (``best_accuracy`` is -1 before the first validation).
        bad_epochs: epochs since the last improvement (early stopping).
        elapsed: wall-clock seconds of the run, over all its sessions.
        train_seconds, images: time inside training steps and images processed, for
            the images/s figure.
        epoch_loss_sum, epoch_loss_count: running mean of the current epoch's loss.
        stopped: why the run ended: "" (running), "completed", "early_stopping",
            "time_budget" or "interrupted".
    """

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    best_accuracy: float = -1.0
    best_ci95: float = float("nan")
    best_epoch: int = 0
    best_step: int = 0
    bad_epochs: int = 0
    elapsed: float = 0.0
    train_seconds: float = 0.0
    images: int = 0
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    stopped: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.images / self.train_seconds if self.train_seconds > 0 else float("nan")


class Trainer:
    """Runs the optimisation of one configuration.

    Args:
        model: the :class:`twinshot.models.SiameseNetwork` being trained.
        loss: a :mod:`twinshot.losses` loss.
        sampler: yields ``steps_per_epoch`` batches of indices per iteration.
        context: the training images and the conversion/augmentation.
        step_fn: turns one batch into a loss value (:func:`batches.step_function`).
        optimizer, scheduler: stepped once per batch.
        config: the resolved config (epochs, budget, logging, early stopping).
        run_dir: where checkpoints and metrics go.
        validate: ``model -> (accuracy, ci95)`` on held-out classes, or ``None``.
        generators: named random generators whose state is saved with the run
            (the augmentation's).
        reporter: progress display.
        callbacks: objects with ``on_step_end`` / ``on_epoch_end``.
        run_start: ``time.perf_counter()`` when the run (data loading included) began;
            counts towards ``time_budget``.
        extra: stored in every checkpoint's ``model.json``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        sampler: Sampler,
        context: BatchContext,
        step_fn: StepFunction,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        *,
        config: TrainConfig,
        run_dir: str | Path,
        validate: Validator | None = None,
        generators: dict[str, torch.Generator] | None = None,
        reporter: Reporter | None = None,
        callbacks: Sequence[Any] = (),
        run_start: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.loss = loss
        self.sampler = sampler
        self.context = context
        self.step_fn = step_fn
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.config = config
        self.run_dir = Path(run_dir)
        self.validate = validate
        self.generators = dict(generators or {})
        self.reporter: Reporter = reporter or SilentReporter()
        self.callbacks = list(callbacks)
        self.state = TrainState()
        self.extra = dict(extra or {})
        self._run_start = time.perf_counter() if run_start is None else run_start
        self._elapsed_before = 0.0
        self._epoch_sampler_state: dict[str, Any] | None = None
        self._interrupt_requested = False
        self._config_toml = config.to_toml()
        self.logger: MetricsLogger | None = None

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (the model's weights are saved apart)."""
        return {
            "format": "twinshot-trainer/1",
            "state": asdict(self.state),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": copy.deepcopy(self._epoch_sampler_state),
            "torch_rng": torch.get_rng_state(),
            "generators": {k: g.get_state() for k, g in self.generators.items()},
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "loss": {k: v.detach().clone() for k, v in self.loss.state_dict().items()},  # e.g. class weights
            "extra_json": json.dumps(self.extra),
        }

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (the model weights included)."""
        if data.get("format") != "twinshot-trainer/1":
            raise TwinshotError("not a twinshot trainer state (format mismatch)")
        self.model.load_state_dict(data["model"])
        if data.get("loss"):
            self.loss.load_state_dict(data["loss"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        self.state = TrainState(**data["state"])
        self.state.stopped = ""
        self._epoch_sampler_state = data["sampler"]
        if self._epoch_sampler_state is not None:
            self.sampler.load_state_dict(copy.deepcopy(self._epoch_sampler_state))
        torch.set_rng_state(data["torch_rng"])
        for k, g in self.generators.items():
            if k in data["generators"]:
                g.set_state(data["generators"][k])
        self._elapsed_before = self.state.elapsed
        self.extra = {**json.loads(data.get("extra_json", "{}")), **self.extra}

    # ------------------------------------------------------------------ helpers

    def elapsed(self) -> float:
        return self._elapsed_before + (time.perf_counter() - self._run_start)

    def _budget_spent(self) -> bool:
        budget = self.config.run.time_budget
        return budget > 0 and self.elapsed() >= budget

    def _metrics(self) -> dict[str, Any]:
        s = self.state
        return {
            "step": s.step,
            "epoch": s.epoch,
            "best_accuracy": None if s.best_accuracy < 0 else s.best_accuracy,
            "best_ci95": None if not math.isfinite(s.best_ci95) else s.best_ci95,
            "best_error": None if s.best_accuracy < 0 else 1.0 - s.best_accuracy,
            "best_epoch": s.best_epoch,
            "best_step": s.best_step,
            "images_per_s": None if not math.isfinite(s.images_per_second) else s.images_per_second,
            "elapsed_s": self.elapsed(),
            "stopped": s.stopped,
            "validation": {
                "n_way": self.config.validation.n_way,
                "n_shot": self.config.validation.n_shot,
                "episodes": self.config.validation.episodes,
                "within_group": self.config.validation.within_group,
            },
        }

    def save(self, name: str, *, with_state: bool) -> Path:
        """Write the checkpoint ``name`` ("best" or "last") atomically."""
        self.state.elapsed = self.elapsed()
        return write_checkpoint(
            self.run_dir,
            name,
            self.model,
            config_toml=self._config_toml,
            metrics=self._metrics(),
            trainer_state=self.state_dict() if with_state else None,
            extra=self.extra,
        )

    def _open_logger(self, resume_step: int | None) -> MetricsLogger:
        """The run's metrics files (a hook: a distributed run's other ranks write none)."""
        return MetricsLogger(self.run_dir, resume_step=resume_step)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._interrupt_requested:
            raise KeyboardInterrupt
        self._interrupt_requested = True
        self.reporter.message("[yellow]Ctrl-C: stopping after this step and saving a resumable checkpoint (again to abort)[/]")

    # ------------------------------------------------------------------ loop

    def fit(self, *, resume_step: int | None = None) -> TrainState:
        """Train until the epochs, the time budget or the patience run out, or Ctrl-C.

        Args:
            resume_step: when continuing a run (after :meth:`load_state_dict`), its step;
                metric rows logged after it are dropped.
        """
        cfg = self.config
        s = self.state
        self.logger = self._open_logger(resume_step)
        handler_installed = False
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._on_sigint)
            handler_installed = True
        budget = cfg.run.time_budget
        deadline = time.perf_counter() + (budget - self.elapsed()) if budget > 0 else None
        self.reporter.start(cfg.total_steps, s.step, deadline=deadline)
        try:
            while s.epoch < cfg.run.epochs and not s.stopped:
                self._run_epoch()
            if not s.stopped:
                s.stopped = "completed"
        except KeyboardInterrupt:
            s.stopped = "interrupted"
            self.save("last", with_state=True)
            self.reporter.message(f"interrupted at step {s.step}; resume with: twinshot train --resume {self.run_dir}")
        finally:
            if handler_installed:
                signal.signal(signal.SIGINT, previous)
            self.reporter.stop()
            self.logger.close()
        s.elapsed = self.elapsed()
        return s

    def _run_epoch(self) -> None:
        cfg, s = self.config, self.state
        if s.step_in_epoch == 0:
            self._epoch_sampler_state = copy.deepcopy(self.sampler.state_dict())
        elif self._epoch_sampler_state is not None:
            self.sampler.load_state_dict(copy.deepcopy(self._epoch_sampler_state))
        batches = iter(self.sampler)
        for _ in range(s.step_in_epoch):  # resuming inside an epoch: replay the sampler only
            next(batches)
        seg_images, seg_start = 0, time.perf_counter()
        log_sum, log_count = 0.0, 0
        while s.step_in_epoch < cfg.run.steps_per_epoch:
            t0 = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                raise TwinshotError(
                    f"the sampler gave only {s.step_in_epoch} batches for an epoch of {cfg.run.steps_per_epoch} steps"
                ) from None
            self.model.train()
            self.optimizer.zero_grad(set_to_none=True)
            value, n_images = self.step_fn(self.model, self.loss, batch, self.context)
            loss_value = float(value.detach())
            if not math.isfinite(loss_value):
                raise TwinshotError(
                    f"the loss became {loss_value} at step {s.step + 1}; lower optimizer.lr (now {cfg.optimizer.lr})"
                )
            value.backward()
            self.optimizer.step()
            self.scheduler.step()
            dt = time.perf_counter() - t0
            s.step += 1
            s.step_in_epoch += 1
            s.images += n_images
            s.train_seconds += dt
            s.epoch_loss_sum += loss_value
            s.epoch_loss_count += 1
            seg_images += n_images
            log_sum += loss_value
            log_count += 1
            ips = seg_images / max(1e-9, time.perf_counter() - seg_start)
            if s.step % cfg.run.log_every == 0 or s.step_in_epoch == cfg.run.steps_per_epoch:
                self.logger.log_step(
                    step=s.step, epoch=s.epoch + 1, loss=log_sum / log_count,
                    lr=self.optimizer.param_groups[0]["lr"], images_per_s=s.images_per_second, elapsed_s=self.elapsed(),
                )
                log_sum, log_count = 0.0, 0
            self.reporter.step(s.step, loss_value, ips)
            for cb in self.callbacks:
                if hasattr(cb, "on_step_end"):
                    cb.on_step_end(self)
            if self._interrupt_requested:
                raise KeyboardInterrupt
            if self._budget_spent():
                s.stopped = "time_budget"
                self.reporter.message(f"time budget of {cfg.run.time_budget:.0f} s reached at step {s.step}")
                break
        self._end_epoch()

    def _end_epoch(self) -> None:
        cfg, s = self.config, self.state
        train_loss = s.epoch_loss_sum / max(1, s.epoch_loss_count)
        accuracy, ci95 = float("nan"), float("nan")
        if self.validate is not None:
            accuracy, ci95 = self.validate(self.model)
        s.epoch += 1
        s.step_in_epoch = 0
        s.epoch_loss_sum, s.epoch_loss_count = 0.0, 0
        improved = self.validate is None or accuracy > s.best_accuracy + cfg.early_stopping.min_delta
        if self.validate is not None and accuracy > s.best_accuracy:
            s.best_accuracy, s.best_ci95, s.best_epoch, s.best_step = accuracy, ci95, s.epoch, s.step
        if improved:
            s.bad_epochs = 0
        else:
            s.bad_epochs += 1
        row = {
            "epoch": s.epoch, "step": s.step, "train_loss": train_loss, "val_accuracy": accuracy,
            "val_ci95": ci95, "val_error": 1.0 - accuracy, "images_per_s": s.images_per_second,
            "elapsed_s": self.elapsed(), "best": int(self.validate is not None and s.best_epoch == s.epoch),
        }
        s.history.append(row)
        assert self.logger is not None
        self.logger.log_epoch(**row)
        if self.validate is not None:
            mark = " *" if s.best_epoch == s.epoch else ""
            self.reporter.message(
                f"epoch {s.epoch}/{cfg.run.epochs}  step {s.step}  loss {train_loss:.4f}  "
                + (f"val within-group verification EER {1.0 - accuracy:.2%}{mark}" if cfg.validation.metric == "group_verification" else
                   f"val {cfg.validation.n_way}-way {cfg.validation.n_shot}-shot accuracy {accuracy:.2%} ± {ci95:.2%}{mark}")
            )
        else:
            self.reporter.message(f"epoch {s.epoch}/{cfg.run.epochs}  step {s.step}  loss {train_loss:.4f}")
        if cfg.early_stopping.patience > 0 and s.bad_epochs >= cfg.early_stopping.patience and not s.stopped:
            s.stopped = "early_stopping"
            self.reporter.message(f"early stopping: no improvement for {s.bad_epochs} epochs")
        if s.epoch >= cfg.run.epochs and not s.stopped:
            s.stopped = "completed"
        self._epoch_sampler_state = copy.deepcopy(self.sampler.state_dict())
        if self.validate is not None and s.best_epoch == s.epoch:
            self.save("best", with_state=False)
        self.save("last", with_state=True)
        for cb in self.callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(self)
