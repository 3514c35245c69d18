"""Optimisers and learning-rate schedules named in the config."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from twinshot.errors import ConfigError
from twinshot.training.config import OptimizerConfig, ScheduleConfig

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")


def build_optimizer(config: OptimizerConfig, model: nn.Module, *extra: nn.Module) -> torch.optim.Optimizer:
    """The optimiser over every trainable parameter of ``model`` and of the ``extra`` modules
    (e.g. a loss with learnable class weights, :mod:`twinshot.losses.margin`). An extra
    module with an ``lr_multiplier`` attribute other than 1 gets its own parameter group at
    ``lr * lr_multiplier`` (the schedule scales every group alike)."""
    if config.lr <= 0:
        raise ConfigError(f"optimizer.lr must be > 0, got {config.lr}")
    params: Any = [p for p in model.parameters() if p.requires_grad]
    groups = []
    for m in extra:
        own = [p for p in m.parameters() if p.requires_grad]
        factor = float(getattr(m, "lr_multiplier", 1.0))
        if own and factor != 1.0:
            groups.append({"params": own, "lr": config.lr * factor})
        else:
            params += own
    if groups:
        params = [{"params": params}, *groups]
    if config.name == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.name == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.name == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    raise ConfigError(f"unknown optimizer.name {config.name!r}; valid: {', '.join(OPTIMIZERS)}")


def lr_factor(config: ScheduleConfig, step: int, total_steps: int) -> float:
    """The multiplier of the base learning rate at optimiser step ``step`` (0-based)."""
    if config.warmup_steps > 0 and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.name == "constant":
        return 1.0
    if config.name == "cosine":
        span = max(1, total_steps - config.warmup_steps)
        t = min(1.0, (step - config.warmup_steps) / span)
        return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
    if config.name == "step":
        return config.gamma ** ((step - config.warmup_steps) // max(1, config.step_size))
    raise ConfigError(f"unknown schedule.name {config.name!r}; valid: {', '.join(SCHEDULES)}")


def build_scheduler(config: ScheduleConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per optimiser step."""
    if config.name not in SCHEDULES:
        raise ConfigError(f"unknown schedule.name {config.name!r}; valid: {', '.join(SCHEDULES)}")
    if not 0.0 <= config.min_lr_ratio <= 1.0:
        raise ConfigError(f"schedule.min_lr_ratio must be in [0, 1], got {config.min_lr_ratio}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(config, step, total_steps))
