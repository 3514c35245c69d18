"""The typed training configuration: frozen dataclasses, loadable from TOML and
overridable from the command line.

A config file has one table per section::

    [data]
    sources = ["../shared/datasets/omniglot/images_background.zip"]
    val = 0.2                       # fraction of groups (alphabets) held out for validation

    [model]
    encoder = "compact"
    encoder_params = { widths = [64, 64, 64, 64] }
    head = "euclidean"
    preprocessing = { size = [28, 28], invert = true }

    [loss]
    name = "prototypical"

    [run]
    epochs = 10
    steps_per_epoch = 200
    time_budget = "25m"

Every key is checked: an unknown one is a :class:`ConfigError` that lists the valid
keys of its section. ``--set section.key=value`` (:func:`apply_overrides`) changes any
key, including keys inside the free-form ``*_params`` tables that are checked later
against the registry of the named component.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Union

from twinshot.errors import ConfigError
from twinshot.training import toml

DEFAULT_OMNIGLOT = "../shared/datasets/omniglot/images_background.zip"


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are split.

    Attributes:
        sources: one or more folders or zips (class sub-folders, nested or not); several
            sources are merged, a class present in two of them (same name) counted once.
            Relative paths are resolved against the working directory, then the
            repository root.
        split_by: ``"group"`` holds out whole groups (Omniglot alphabets), ``"class"``
            holds out classes.
        val: fraction of the groups (or classes) held out for validation.
        split_seed: seed of the class-disjoint split.
        train_limit: keep only this many of the training part's groups (or classes, by
            ``split_by``), the first of a permutation seeded by ``split_seed``
            (:func:`twinshot.data.splits.limit_units`; nested: a smaller limit keeps a
            subset of a larger one's); the validation part is unchanged. 0: all of them.
        rotations: rotations in degrees (multiples of 90) added to the **training** set
            as new classes.
        cache_dir: where the data loader may cache decoded images ("" = no cache).
        relabel: a named relabelling applied to both parts after the split ("" = keep the
            folder classes); see :data:`twinshot.data.relabel.RELABELS` (e.g.
            ``"signatures_writer_name"``: writer/name classes grouped by name).
        extra_train_sources: more folders or zips added to the **training** part only
            (never split, never validated on), e.g. other writers as extra identities.
        extra_train_relabel: a relabelling of :data:`RELABELS` applied to them ("" = none).
        aligned: the sources already hold the face chips the model's aligner makes
            (``scripts/lfw_chip_folders.py``): they are loaded without detection or
            alignment, while the trained model still aligns the photos it is given.
        drop_train_groups: groups (alphabets) removed from the **training** part after the
            split, which is unchanged (the same groups stay held out), e.g. to measure how
            accuracy grows with the number of training alphabets.
    """

    sources: tuple[str, ...] = (DEFAULT_OMNIGLOT,)
    split_by: str = "group"
    val: float = 0.2
    split_seed: int = 0
    train_limit: int = 0
    rotations: tuple[int, ...] = ()
    cache_dir: str = ""
    relabel: str = ""
    extra_train_sources: tuple[str, ...] = ()
    extra_train_relabel: str = ""
    aligned: bool = False
    drop_train_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreprocessingConfig:
    """How raw images become model input (see :class:`twinshot.data.Preprocessing`;
    ``align``: a face aligner, e.g. ``"face-api"``, ``""``: none)."""

    size: tuple[int, int] = (28, 28)
    channels: int = 1
    invert: bool = True
    mean: float = 0.0
    std: float = 1.0
    keep_aspect: bool = False
    align: str = ""


@dataclass(frozen=True)
class ModelConfig:
    """The fields of :class:`twinshot.models.ModelSpec`: encoder and head by registry
    name with their parameters, and the preprocessing."""

    encoder: str = "compact"
    encoder_params: dict[str, Any] = field(default_factory=dict)
    head: str = "euclidean"
    head_params: dict[str, Any] = field(default_factory=dict)
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)


@dataclass(frozen=True)
class LossConfig:
    """A loss of :data:`twinshot.losses.LOSSES` by name, with its parameters. The loss's
    ``batch_kind`` decides the sampler: pairs, triplets, labelled (P x K) batches or
    episodes."""

    name: str = "prototypical"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SamplerConfig:
    """Batch shapes; only the fields of the loss's batch kind are used.

    Attributes:
        batch_size: pairs or triplets per batch ("pairs", "triplets").
        same_fraction: fraction of same-class pairs ("pairs").
        n_classes, n_per_class: P classes x K images ("labelled").
        n_way, n_shot, n_query: classes, support and query images per class ("episode").
        within_group: draw each episode's (or P x K batch's) classes from one group
            ("episode", "labelled": batch-hard negatives from the same alphabet).
            For P x K batches the same as ``within_group_share = 1``.
        within_group_share: the share of P x K batches ("labelled") whose classes all
            come from one group, in [0, 1]: each batch is within a group with this
            probability (seeded by ``run.seed``), else its classes come from anywhere.
            0 (the default): none; ``within_group = true`` means 1.
        negative_only: a glob on class names ("*/forged": CEDAR's skilled forgeries) of
            classes used only as negatives ("pairs", "triplets").
        hard_negatives: share of negatives drawn from another class of the anchor's group,
            e.g. the writer's own forgeries ("pairs", "triplets").
        extra_share: share of each batch's pairs whose first class comes from
            ``data.extra_train_sources`` ("pairs" only); those pairs take their negatives
            among the extra classes, the others among the main sources' classes. 0 (the
            default): pairs drawn over all classes alike, the extra ones included.
    """

    batch_size: int = 128
    same_fraction: float = 0.5
    n_classes: int = 32
    n_per_class: int = 4
    n_way: int = 20
    n_shot: int = 1
    n_query: int = 5
    within_group: bool = False
    within_group_share: float = 0.0
    negative_only: str = ""
    hard_negatives: float = 0.0
    extra_share: float = 0.0


@dataclass(frozen=True)
class AugmentationConfig:
    """A batch augmentation of :data:`twinshot.data.AUGMENTATIONS` by name ("none": off)."""

    name: str = "none"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimizerConfig:
    """``name``: "adam", "adamw" or "sgd" (``momentum`` only for sgd)."""

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule over the run's steps.

    ``name``: "constant"; "cosine" (to ``min_lr_ratio * lr`` at the last step); "step"
    (multiply by ``gamma`` every ``step_size`` steps). ``warmup_steps`` of linear warm-up
    precede any of them.
    """

    name: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    step_size: int = 1000
    gamma: float = 0.5


@dataclass(frozen=True)
class RunConfig:
    """Length and environment of the run.

    Attributes:
        epochs: number of epochs; an epoch is ``steps_per_epoch`` optimiser steps
            followed by a validation.
        time_budget: wall-clock limit in seconds for the whole run (data loading and
            validation included); ``0`` for none. TOML and flags accept ``"25m"``,
            ``"1h"``, ``"90s"``. When reached, the run validates, saves and stops.
        seed: seeds the model initialisation, the sampler and the augmentation.
        threads: torch intra-op threads; ``0`` uses the cores available to the process.
        log_every: steps per row of ``metrics.csv``.
        precision: ``"fp32"``, or ``"bf16"``: the encoder's forward pass (and so its
            backward) runs under ``torch.autocast`` in bfloat16, the loss, the optimiser
            and the weights stay float32 (mixed precision; 2-3x faster on CPUs with
            AVX512-BF16/AMX, slower on CPUs without). Validation is float32.
        channels_last: keep the weights and input batches in channels-last memory format
            (faster convolutions on CPU, same arithmetic up to rounding).
        init_from: start from existing weights instead of a random initialisation: a
            shipped model's name (``"omniglot"``) or a training run directory (its
            ``best/`` checkpoint). ``[model]`` must match the source's model field by
            field; the optimiser and schedule start fresh. The source's path and the
            SHA-256 of its weights are recorded in the checkpoints' ``model.json``
            (``extra.init_from``). ``""`` (the default): a random initialisation.
    """

    epochs: int = 10
    steps_per_epoch: int = 200
    time_budget: float = 0.0
    seed: int = 0
    threads: int = 0
    log_every: int = 10
    precision: str = "fp32"
    channels_last: bool = False
    init_from: str = ""


@dataclass(frozen=True)
class ValidationConfig:
    """N-way K-shot accuracy on the held-out classes after every epoch.

    Attributes:
        n_way, n_shot, n_query: the episodes (20-way 1-shot, one query per class, like
            Lake's runs).
        episodes: episodes per validation (the 95% CI shrinks as 1/sqrt(episodes)).
        within_group: draw each episode's classes from one group (within-alphabet).
        seed: the same episodes are drawn at every epoch.
        calibration_pairs: pairs of validation images used, at the end, to fit the
            head's logistic (Platt scaling) when the loss does not train it.
        metric: ``"episodes"`` (the N-way K-shot accuracy above) or
            ``"group_verification"``: 1 - EER of within-group verification (genuine pairs
            of a class vs another class of its group, ``sampler.negative_only`` classes
            never references; CEDAR's genuine vs skilled forgeries of one writer), see
            :mod:`twinshot.evaluation.group_verification`.
    """

    n_way: int = 20
    n_shot: int = 1
    n_query: int = 1
    episodes: int = 400
    within_group: bool = True
    seed: int = 0
    calibration_pairs: int = 4000
    metric: str = "episodes"


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Stop when the validation accuracy has not improved by more than ``min_delta`` for
    ``patience`` epochs (``0``: never stop early)."""

    patience: int = 0
    min_delta: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """The whole training configuration, saved as ``config.toml`` in every run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)

    @property
    def total_steps(self) -> int:
        return self.run.epochs * self.run.steps_per_epoch

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return from_dict(cls, data)

    def to_toml(self) -> str:
        return toml.dumps(self.to_dict())

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy with dotted-key overrides: ``cfg.replace(**{"run.epochs": 3})``."""
        return apply_overrides(self, overrides)


# --------------------------------------------------------------------------- conversion

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m(?:in)?)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")


def parse_duration(value: Any, *, name: str = "run.time_budget") -> float:
    """Seconds from a number or a string like ``"25m"``, ``"1h30m"``, ``"90s"``, ``"120"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a duration, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            m = _DURATION.match(text)
            if not text or m is None or not any(m.groups()):
                raise ConfigError(f"{name}: {value!r} is not a duration (examples: 1800, \"30m\", \"1h\", \"90s\")") from None
            h, mnt, s = (float(g) if g else 0.0 for g in m.groups())
            seconds = h * 3600 + mnt * 60 + s
    else:
        raise ConfigError(f"{name}: expected a duration, got {type(value).__name__}")
    if seconds < 0:
        raise ConfigError(f"{name}: must be >= 0, got {seconds}")
    return seconds


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists to tuples, ints to floats."""
    origin = typing.get_origin(tp)
    if name == "run.time_budget":
        return parse_duration(value, name=name)
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a table, got {value!r}")
        return from_dict(tp, value, prefix=name + ".")
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, name)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if tp is Any:
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and len(args) == 2 and args[1] is Ellipsis:
            value = [value]  # a single source given as a string
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{name}[{i}]") for i, v in enumerate(value))
        if isinstance(value, (int, float)):
            value = [value] * len(args)
        if len(value) != len(args):
            raise ConfigError(f"{name}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a table, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{name}: unsupported config type {tp!r}")  # pragma: no cover


def from_dict(cls: type, data: dict[str, Any], *, prefix: str = "") -> Any:
    """Build the dataclass ``cls`` from nested dicts, checking every key and type."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        where = f"in [{prefix[:-1]}]" if prefix else "at the top level"
        raise ConfigError(f"unknown config key {prefix + unknown[0]!r} {where}; valid: {', '.join(names)}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    """Nested dicts of plain values (lists for tuples), ready for TOML or JSON."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return plain(obj)


def apply_overrides(config: TrainConfig, overrides: dict[str, Any] | list[str]) -> TrainConfig:
    """Apply dotted-key overrides to a config and re-check it.

    ``overrides`` is a dict ``{"run.epochs": 3}`` or a list of ``"key.sub=value"``
    strings (values parsed as TOML, else taken as strings). Keys inside ``*_params``
    tables may be new (``model.encoder_params.widths=[96,96,96,96]``).
    """
    if isinstance(overrides, (list, tuple)):
        parsed: dict[str, Any] = {}
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"--set {item!r}: expected key.sub=value")
            key, _, text = item.partition("=")
            parsed[key.strip()] = toml.parse_value(text.strip())
        overrides = parsed
    data = to_dict(config)
    for key, value in overrides.items():
        parts = [p for p in key.split(".") if p]
        if not parts:
            raise ConfigError(f"empty override key {key!r}")
        node: Any = data
        cls: Any = TrainConfig
        for depth, part in enumerate(parts[:-1]):
            if cls is not None:
                names = [f.name for f in fields(cls)]
                if part not in names:
                    where = ".".join(parts[:depth]) or "top level"
                    raise ConfigError(f"unknown config key {'.'.join(parts[: depth + 1])!r} ({where}); valid: {', '.join(names)}")
                tp = typing.get_type_hints(cls)[part]
                cls = tp if _is_dataclass_type(tp) else None
            if not isinstance(node.get(part), dict):
                if cls is None and part in node:
                    raise ConfigError(f"{key}: {'.'.join(parts[: depth + 1])} is not a table")
                node[part] = {}
            node = node[part]
        last = parts[-1]
        if cls is not None:
            names = [f.name for f in fields(cls)]
            if last not in names:
                where = ".".join(parts[:-1]) or "top level"
                raise ConfigError(f"unknown config key {key!r} (in {where}); valid: {', '.join(names)}")
        node[last] = value
    return from_dict(TrainConfig, data)


def load_config(path: str | Path | None = None, *, preset: str | None = None, overrides: dict[str, Any] | list[str] | None = None) -> TrainConfig:
    """The config from a preset and/or a TOML file (the file's keys override the
    preset's), then ``overrides``. With neither, the defaults."""
    data: dict[str, Any] = {}
    if preset is not None:
        from twinshot.training.presets import preset_dict

        data = preset_dict(preset)
    if path is not None:
        _merge(data, toml.load(path))
        try:
            config = from_dict(TrainConfig, data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    else:
        config = from_dict(TrainConfig, data)
    if overrides:
        config = apply_overrides(config, overrides)
    return config


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict) and not k.endswith("params"):
            _merge(base[k], v)
        else:
            base[k] = v


def save_config(config: TrainConfig, path: str | Path) -> Path:
    """Write ``config`` as TOML atomically."""
    from twinshot.training.checkpoint import atomic_write_text

    path = Path(path)
    atomic_write_text(path, config.to_toml())
    return path
