"""``train(config, run_dir)``: everything a training run does, from data to the final
calibrated model. The CLI's ``twinshot train`` calls this and prints the result."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from twinshot.errors import ConfigError, TwinshotError
from twinshot.training.checkpoint import (
    CONFIG,
    checkpoint_dir,
    clean_temporaries,
    read_trainer_state,
    write_checkpoint,
    write_json,
)
from twinshot.training.config import TrainConfig, apply_overrides, load_config, save_config

#: Config sections that may change when a run is resumed (its length and patience).
RESUMABLE_SECTIONS = ("run", "early_stopping")


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train`.

    Attributes:
        run_dir: the run directory.
        best_accuracy, best_ci95: validation N-way K-shot accuracy of the best epoch
            (NaN without validation).
        best_epoch, best_step: when it was reached.
        epochs, steps: done in total.
        images_per_second: training throughput (forward + backward, images per second).
        elapsed: wall-clock seconds of the run (all sessions).
        stopped: "completed", "early_stopping", "time_budget" or "interrupted".
        calibration: the head's fitted logistic ``{"scale", "bias", "pairs", "log_loss"}``, or None.
    """

    run_dir: Path
    best_accuracy: float
    best_ci95: float
    best_epoch: int
    best_step: int
    epochs: int
    steps: int
    images_per_second: float
    elapsed: float
    stopped: str
    calibration: dict[str, Any] | None = None

    @property
    def interrupted(self) -> bool:
        return self.stopped == "interrupted"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        for k, v in d.items():
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = None
        d["best_error"] = None if d["best_accuracy"] is None else 1.0 - d["best_accuracy"]
        return d


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _cpu_times(stat: str) -> tuple[int, int] | None:
    """(idle, total) jiffies of the machine from /proc/stat's first line, or None."""
    try:
        with open(stat) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 5:
        return None
    ticks = [int(x) for x in fields[1:]]
    return ticks[3] + (ticks[4] if len(ticks) > 4 else 0), sum(ticks)


def idle_cores(window: float = 0.3, stat: str = "/proc/stat") -> int:
    """The cores not busy with other processes now: :func:`available_cores` times the
    machine's idle share over ``window`` seconds, rounded, at least 1 (all of them where
    /proc/stat cannot be read). Two torch threads on two cores of which one is busy run
    several times slower than one thread (docs/training.md, "Speed")."""
    cores = available_cores()
    first = _cpu_times(stat)
    if first is None:
        return cores
    time.sleep(window)
    second = _cpu_times(stat)
    if second is None or second[1] <= first[1]:
        return cores
    idle_share = (second[0] - first[0]) / (second[1] - first[1])
    return max(1, min(cores, round(idle_share * cores)))


def _make_augment(config: TrainConfig, generator: torch.Generator):
    """``x (B, C, H, W) float -> augmented x``: the configured augmentation, drawing its
    randomness from ``generator``."""
    name = config.augmentation.name
    if name in ("none", ""):
        if config.augmentation.params:
            raise ConfigError("augmentation.params given but augmentation.name is 'none'")
        return lambda x: x
    from twinshot.data import AUGMENTATIONS

    augmentation = AUGMENTATIONS.build(name, **config.augmentation.params)
    return lambda x: augmentation(x, generator=generator)


def build_training_model(config: TrainConfig, spec: Any = None) -> Any:
    """The config's model, freshly initialised from the current torch seed, in channels-last
    memory format when ``run.channels_last``."""
    from twinshot.models import build_model

    model = build_model(spec if spec is not None else model_spec(config))
    return model.to(memory_format=torch.channels_last) if config.run.channels_last else model


def _negative_only_mask(config: TrainConfig, class_names: Sequence[str]) -> torch.Tensor:
    """``(n_classes,)`` bool: the classes ``sampler.negative_only`` (a glob) names."""
    import fnmatch

    pattern = config.sampler.negative_only
    return torch.tensor([bool(pattern) and fnmatch.fnmatchcase(c, pattern) for c in class_names], dtype=torch.bool)


def _check_within_group_share(config: TrainConfig, batch_kind: str) -> None:
    """``sampler.within_group_share``: in [0, 1], for P x K batches, not beside a
    contradicting ``sampler.within_group`` (checked before any data is read)."""
    s = config.sampler
    if not 0.0 <= s.within_group_share <= 1.0:
        raise ConfigError(f"sampler.within_group_share must be in [0, 1], got {s.within_group_share}")
    if s.within_group and s.within_group_share not in (0.0, 1.0):
        raise ConfigError(
            f"sampler.within_group = true means sampler.within_group_share = 1; "
            f"got within_group_share = {s.within_group_share} as well (set one of them)"
        )
    if s.within_group_share and batch_kind != "labelled":
        raise ConfigError(
            f"sampler.within_group_share is for P x K batches (triplet-style losses), not {config.loss.name!r} "
            f"({batch_kind} batches); use sampler.within_group for episodes"
        )


def _make_sampler(config: TrainConfig, batch_kind: str, train_data: Any, extra_classes: frozenset[str] = frozenset()) -> Any:
    from twinshot import data as D

    s, n = config.sampler, config.run.steps_per_epoch
    seed = config.run.seed
    names = train_data.class_names
    negatives: dict[str, Any] = {}
    if s.negative_only or s.hard_negatives:
        mask = _negative_only_mask(config, names)
        negatives = dict(negative_only=mask, hard_negatives=s.hard_negatives, class_groups=train_data.class_groups)
    if s.extra_share:
        if batch_kind != "pairs":
            raise ConfigError(f"sampler.extra_share is for pair losses, not {config.loss.name!r} ({batch_kind} batches)")
        if not extra_classes:
            raise ConfigError("sampler.extra_share needs data.extra_train_sources")
        extra = torch.tensor([c in extra_classes for c in names], dtype=torch.bool)
        negatives = dict(negatives, extra=extra, extra_share=s.extra_share)
    if batch_kind == "pairs":
        return D.PairSampler(train_data.labels, s.batch_size, n, seed, s.same_fraction, class_names=names, skip_small=True, **negatives)
    if batch_kind == "triplets":
        return D.TripletSampler(train_data.labels, s.batch_size, n, seed, class_names=names, skip_small=True, **negatives)
    if batch_kind == "labelled":
        return D.ClassBalancedSampler(
            train_data.labels, s.n_classes, s.n_per_class, n, seed, class_names=names, skip_small=True,
            class_groups=train_data.class_groups, within_group=s.within_group,
            within_group_share=0.0 if s.within_group else s.within_group_share,
        )
    if batch_kind == "episode":
        return D.EpisodeSampler(
            train_data.labels, s.n_way, s.n_shot, s.n_query, n, seed,
            class_groups=train_data.class_groups, within_group=s.within_group, class_names=names, skip_small=True,
        )
    raise ConfigError(f"no sampler for batch kind {batch_kind!r}")  # pragma: no cover


def model_spec(config: TrainConfig) -> Any:
    """The :class:`ModelSpec` of the config's ``[model]`` table."""
    from twinshot.data.images import Preprocessing
    from twinshot.models import ModelSpec

    m = config.model
    p = m.preprocessing
    preprocessing = Preprocessing(size=p.size, channels=p.channels, invert=p.invert, mean=p.mean, std=p.std, keep_aspect=p.keep_aspect, align=p.align)
    return ModelSpec(m.encoder, dict(m.encoder_params), m.head, dict(m.head_params), preprocessing)


#: What a run writes before its first checkpoint: a directory holding only these is a run
#: that failed early (nothing to resume), and a new run may take its place.
_EARLY_FILES = {CONFIG, "metrics.csv", "epochs.csv", "summary.json", "training.png"}


def _pin_sources(config: TrainConfig) -> TrainConfig:
    """Record the user's own relative data sources as absolute paths, so that the run's
    ``config.toml`` (``--resume``, ``evaluate heldout``) finds them from any directory.
    Sources relative to the repository root (the presets' ``../shared/datasets/...``) are
    kept as written."""
    from twinshot.training.data import REPO_ROOT

    pinned = []
    for source in config.data.sources:
        path = Path(source).expanduser()
        if not path.is_absolute() and path.exists() and (REPO_ROOT / path).resolve() != path.resolve():
            source = str(path.resolve())
        pinned.append(source)
    if pinned == list(config.data.sources):
        return config
    return apply_overrides(config, {"data.sources": pinned})


def _check_new_run_dir(run_dir: Path) -> None:
    """``run_dir`` may hold a new run: absent, empty, or left by a run that stopped before
    its first checkpoint (then it is cleared)."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise TwinshotError(f"{run_dir} exists and is not a directory; choose another --out")
    names = {p.name for p in run_dir.iterdir()}
    if not names:
        return
    if names <= _EARLY_FILES and CONFIG in names:
        for name in names:
            (run_dir / name).unlink()
        return
    if checkpoint_dir(run_dir, "last") is not None:
        raise TwinshotError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose another --out")
    raise TwinshotError(f"{run_dir} already exists and is not empty; choose another --out")


def train(
    config: TrainConfig | None,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overrides: dict[str, Any] | list[str] | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
    extra: dict[str, Any] | None = None,
    console: Any = None,
    data: Any = None,
) -> TrainResult:
    """Train a Siamese network and write the run to ``run_dir``.

    Args:
        config: the resolved config (ignored when ``resume``: the run's own is used).
        run_dir: a new (or empty) directory, or the run to resume.
        resume: continue the run in ``run_dir`` exactly where its ``last/`` checkpoint
            stopped.
        overrides: with ``resume``, changes to the ``run`` and ``early_stopping``
            sections (e.g. more epochs); other sections cannot change.
        progress: show progress bars and epoch lines on stderr.
        callbacks: trainer callbacks (``on_step_end`` / ``on_epoch_end``).
        extra: stored in the checkpoints' ``model.json`` (e.g. the command line).
        data: an already loaded and split :class:`twinshot.training.data.RunData` to use
            instead of loading ``config.data`` (the caller keeps them consistent).

    Inside a ``torch.distributed`` process group (torchrun, or
    :func:`twinshot.training.distributed.distributed_session`) every process calls this
    with the same arguments and the run is data-parallel: each embeds its shard of the
    global batch under DDP, and only rank 0 reads and writes ``run_dir`` (see
    :mod:`twinshot.training.distributed`).

    Returns:
        A :class:`TrainResult`; ``stopped == "interrupted"`` after Ctrl-C (the run can
        be resumed).

    Raises:
        TwinshotError: one line, for a bad config, missing data or an unusable run dir.
    """
    from twinshot.losses import LOSSES, bind_loss
    from twinshot.training.batches import BatchContext, step_function
    from twinshot.training.calibrate import calibrate_head
    from twinshot.training.data import prepare_data
    from twinshot.training.distributed import DistContext
    from twinshot.training.optim import build_optimizer, build_scheduler
    from twinshot.training.plot import plot_run
    from twinshot.training.progress import RichReporter, SilentReporter
    from twinshot.training.trainer import Trainer

    run_start = time.perf_counter()
    run_dir = Path(run_dir)
    dctx = DistContext.current()  # None outside a torch.distributed process group
    main = dctx is None or dctx.is_main  # only the main process touches run_dir
    progress = progress and main
    if dctx is None:
        config, saved_state = _open_run(config, run_dir, resume, overrides)
    else:  # rank 0 checks and reads the run directory; the others get its outcome
        config, saved_state = dctx.from_rank0(lambda: _open_run(config, run_dir, resume, overrides))
    assert config is not None
    if config.run.epochs < 1 or config.run.steps_per_epoch < 1:
        raise ConfigError("run.epochs and run.steps_per_epoch must be >= 1")
    if config.run.log_every < 1:
        raise ConfigError("run.log_every must be >= 1")
    from twinshot.training.batches import resolve_precision

    precision = resolve_precision(config.run.precision)

    cores = available_cores() if dctx is None else dctx.threads(available_cores())
    torch.set_num_threads(config.run.threads or cores)
    reporter = RichReporter(console=console) if progress else SilentReporter()

    # Components (the config is checked against the registries before any data is read).
    loss = LOSSES.build(config.loss.name, **config.loss.params)
    batch_kind = loss.batch_kind
    _check_within_group_share(config, batch_kind)
    spec = model_spec(config)
    torch.manual_seed(config.run.seed)
    model = build_training_model(config, spec)
    init_record = _initial_weights(config, spec, model, run_dir, resuming=saved_state is not None)
    if dctx is not None:  # global-batch BatchNorm, this rank's device and dropout seed
        model = dctx.prepare_model(model, config.run.seed)
    aug_generator = torch.Generator().manual_seed(config.run.seed + 1)
    augment = _make_augment(config, aug_generator)

    if data is None:
        data = prepare_data(config.data, spec.preprocessing, progress=progress)
    bind_loss(loss, data.train.n_classes, model.embedding_dim)  # class-weight losses: one column per class
    optimizer = build_optimizer(config.optimizer, model, loss)
    scheduler = build_scheduler(config.schedule, optimizer, config.total_steps)
    from twinshot.training.preflight import check_sizes, held_out_names

    check_sizes(config, batch_kind, data.train, data.val)
    sampler = _make_sampler(config, batch_kind, data.train, getattr(data, "extra_classes", frozenset()))
    context = BatchContext(
        data.train.images, data.train.labels, spec.preprocessing, augment,
        precision=precision, channels_last=config.run.channels_last,
    )

    validate = None
    if data.val is not None:
        from twinshot.evaluation.episodes import evaluate_episodes
        from twinshot.models.encoders import single_view

        v = config.validation
        val_data = data.val

        def episodes_accuracy(m: Any) -> tuple[float, float]:
            with single_view(m):  # test-time shifts (model.encoder_params.test_shifts) cost 5x
                r = evaluate_episodes(
                    m, val_data, n_way=v.n_way, n_shot=v.n_shot, n_query=v.n_query,
                    episodes=v.episodes, seed=v.seed, within_group=v.within_group,
                    skip_small=True,  # preflight.check_sizes made sure enough classes are left
                )
            return r.accuracy, r.ci95

        validate = episodes_accuracy
        if v.metric == "group_verification":
            from twinshot.evaluation.group_verification import group_verification_eer

            mask = _negative_only_mask(config, val_data.class_names)

            def group_verification(m: Any) -> tuple[float, float]:
                with single_view(m):  # one view, as the episodes metric (test_views cost 9x for signet)
                    return 1.0 - group_verification_eer(m, val_data, mask)[0], 0.0

            validate = group_verification
        elif v.metric != "episodes":
            raise ConfigError(f"validation.metric must be 'episodes' or 'group_verification', got {v.metric!r}")

    step_fn = step_function(batch_kind)
    make_trainer: Any = Trainer
    if dctx is not None:  # each rank embeds its shard of the global batch, under DDP
        context, step_fn = dctx.wrap_step(model, loss, context, step_fn)
        validate = None if validate is None else dctx.validate_on_rank0(validate)
        make_trainer = dctx.trainer
    run_extra = {
        "trained_with": "twinshot train",
        "data": {
            "sources": list(config.data.sources),
            "train_classes": data.train.n_classes,
            "train_images": len(data.train),
            **held_out_names(config.data.split_by, data.val),
            "val_classes": 0 if data.val is None else data.val.n_classes,
        },
        "precision": precision,
        **({"distributed": dctx.describe()} if dctx is not None else {}),
        **({"init_from": init_record} if init_record is not None else {}),
        **(extra or {}),
    }
    trainer = make_trainer(
        model, loss, sampler, context, step_fn, optimizer, scheduler,
        config=config, run_dir=run_dir, validate=validate, generators={"augmentation": aug_generator},
        reporter=reporter, callbacks=callbacks, run_start=run_start, extra=run_extra,
    )
    created = not run_dir.exists()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _fit_and_finish(trainer, saved_state, config, data, run_dir, reporter, LOSSES, calibrate_head, plot_run, main)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        if main and checkpoint_dir(run_dir, "last") is None:
            if created:  # nothing resumable: leave no directory that blocks the same --out
                shutil.rmtree(run_dir, ignore_errors=True)
        elif isinstance(exc, TwinshotError):
            raise TwinshotError(f"{exc} (the run can continue with: twinshot train --resume {run_dir})") from exc
        raise


def _initial_weights(config: TrainConfig, spec: Any, model: Any, run_dir: Path, *, resuming: bool) -> dict[str, str] | None:
    """For ``run.init_from``: load the source's weights into ``model`` (a new run) and
    return what to record about the source; when resuming, the record the run's ``last/``
    checkpoint already holds (the weights come from that checkpoint)."""
    if not config.run.init_from:
        return None
    if resuming:
        last = checkpoint_dir(run_dir, "last")
        if last is None:
            return None
        return json.loads((last / "model.json").read_text()).get("extra", {}).get("init_from")
    from twinshot.training.init_from import check_same_model, load_initial_weights, resolve_init_source

    source = resolve_init_source(config.run.init_from)
    check_same_model(spec.to_dict(), source)
    load_initial_weights(model, source)
    return source.record()


def _fit_and_finish(
    trainer: Any, saved_state: Any, config: TrainConfig, data: Any, run_dir: Path, reporter: Any,
    LOSSES: Any, calibrate_head: Any, plot_run: Any, main: bool = True,
) -> TrainResult:
    """Fit (or continue), then pick and calibrate the best model, plot and summarise."""
    if saved_state is not None:
        trainer.load_state_dict(saved_state)
        reporter.message(f"resuming {run_dir} at step {trainer.state.step} (epoch {trainer.state.epoch})")
    elif main:
        save_config(config, run_dir / CONFIG)
        if data.val is not None:
            from twinshot.training.preflight import describe_held_out

            reporter.message(
                f"data: {data.train.n_classes} training classes ({len(data.train)} images); "
                + describe_held_out(config.data.split_by, data.val)
            )
    state = trainer.fit(resume_step=trainer.state.step if saved_state is not None else None)

    calibration = None
    if state.stopped != "interrupted" and main:
        calibration = _finish(trainer, data, config, LOSSES, calibrate_head)
        plot_run(run_dir)
    result = TrainResult(
        run_dir=run_dir,
        best_accuracy=state.best_accuracy if state.best_accuracy >= 0 else float("nan"),
        best_ci95=state.best_ci95,
        best_epoch=state.best_epoch,
        best_step=state.best_step,
        epochs=state.epoch,
        steps=state.step,
        images_per_second=state.images_per_second,
        elapsed=state.elapsed,
        stopped=state.stopped,
        calibration=calibration,
    )
    if main:
        write_json(run_dir / "summary.json", result.to_dict())
    return result


def _open_run(
    config: TrainConfig | None, run_dir: Path, resume: bool, overrides: dict[str, Any] | list[str] | None
) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The run's config and, when resuming, its saved trainer state; checks ``run_dir``."""
    saved_state = None
    if resume:
        if not (run_dir / CONFIG).is_file():
            raise TwinshotError(f"{run_dir}: not a training run (no {CONFIG}); nothing to resume")
        config = load_config(run_dir / CONFIG)
        if overrides:
            keys = overrides if isinstance(overrides, dict) else dict(o.split("=", 1) for o in overrides if "=" in o)
            bad = [k for k in keys if k.split(".")[0] not in RESUMABLE_SECTIONS or k.strip() == "run.init_from"]
            if bad:
                raise ConfigError(
                    f"cannot change {', '.join(bad)} when resuming; only {', '.join(s + '.*' for s in RESUMABLE_SECTIONS)} (not run.init_from)"
                )
            config = apply_overrides(config, overrides)
        saved_state = read_trainer_state(run_dir)
        clean_temporaries(run_dir)
    else:
        if config is None:
            raise ConfigError("no config given")
        if overrides:
            config = apply_overrides(config, overrides)
        _check_new_run_dir(run_dir)
        config = _pin_sources(config)
    assert config is not None
    return config, saved_state


def _finish(trainer: Any, data: Any, config: TrainConfig, losses: Any, calibrate_head: Any) -> dict[str, Any] | None:
    """Load the best weights, calibrate the head's logistic when the loss did not train
    it, and rewrite ``best/`` (``last/`` is left exactly as trained, for resuming)."""
    from safetensors.torch import load_file

    from twinshot.losses import PairBCELoss

    model = trainer.model
    best = checkpoint_dir(trainer.run_dir, "best")
    if best is not None:
        model.load_state_dict(load_file(str(best / "model.safetensors")))
    calibration = None
    if not isinstance(trainer.loss, PairBCELoss):
        target = data.val if data.val is not None else data.train
        cal = calibrate_head(model, target, pairs=config.validation.calibration_pairs, seed=config.validation.seed)
        calibration = asdict(cal)
    metrics = trainer._metrics()
    metrics["calibration"] = calibration
    if best is None:  # no validation: the final model is the one to use
        metrics["note"] = "no validation set: best/ is the final model"
    else:
        old = json.loads((best / "metrics.json").read_text())
        for k in ("step", "epoch"):
            metrics[k] = old.get(k, metrics[k])
    write_checkpoint(trainer.run_dir, "best", model, config_toml=trainer._config_toml, metrics=metrics, extra=trainer.extra)
    return calibration
