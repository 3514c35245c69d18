"""Before the first step: does the split have enough classes (and images per class) for
the training sampler and for validation? Every problem is reported at once, naming the
config keys to change (``--set section.key=value``) and the largest value that fits."""

from __future__ import annotations

from typing import Any

import torch

from twinshot.errors import ConfigError


def _fits(data: Any, need: int, within_group: bool) -> int:
    """How many classes with at least ``need`` images one batch can draw: all of them, or
    (``within_group``) those of the largest group."""
    counts = torch.bincount(data.labels, minlength=data.n_classes)
    ok = counts >= need
    if not within_group:
        return int(ok.sum())
    groups = data.class_groups[ok]
    return int(torch.bincount(groups).max()) if len(groups) else 0


def _most(data: Any) -> int:
    """The most images any one class of ``data`` has."""
    counts = torch.bincount(data.labels, minlength=data.n_classes)
    return int(counts.max()) if len(counts) else 0


def _try(key: str, have: int, data: Any, need_keys: str, need: int, extra: str = "") -> str:
    """The fix to suggest: a smaller ``key`` when 2 or more classes fit; else (a smaller
    ``key`` cannot help) a smaller per-class need, or more images when no class has 2."""
    if have >= 2:
        return f"try --set {key}={have}{extra}"
    most = _most(data)
    if most < 2:
        return f"a smaller {key} cannot help: no class has more than {most} image(s) and each needs >= 2; add images"
    return f"a smaller {key} cannot help: lower {need_keys} (now {need}; the fullest class has {most} images){extra}"


def check_sizes(config: Any, batch_kind: str, train: Any, val: Any | None) -> None:
    """Raise one :class:`ConfigError` listing every sampler or validation size that the
    split cannot fill; do nothing when all fit.

    Args:
        config: the run's :class:`~twinshot.training.config.TrainConfig`.
        batch_kind: the loss's batch kind ("pairs", "triplets", "labelled", "episode").
        train, val: the training and validation parts (``LabelledImages``; ``val`` may be None).
    """
    s, v = config.sampler, config.validation
    problems: list[str] = []
    grp = " (or --set sampler.within_group=false)" if s.within_group else ""
    if batch_kind == "episode":
        need, have = s.n_shot + s.n_query, _fits(train, s.n_shot + s.n_query, s.within_group)
        if have < s.n_way:
            problems.append(
                f"sampler.n_way = {s.n_way} but {'one training group' if s.within_group else 'the training split'} "
                f"has only {have} classes with >= {need} images (sampler.n_shot + sampler.n_query); "
                f"{_try('sampler.n_way', have, train, 'sampler.n_shot + sampler.n_query', need, grp)}"
            )
    elif batch_kind == "labelled":
        within = s.within_group or s.within_group_share > 0
        if within and not grp:
            grp = " (or --set sampler.within_group_share=0)"
        have = _fits(train, s.n_per_class, within)
        if have < s.n_classes:
            problems.append(
                f"sampler.n_classes = {s.n_classes} but {'one training group' if within else 'the training split'} "
                f"has only {have} classes with >= {s.n_per_class} images (sampler.n_per_class); "
                f"{_try('sampler.n_classes', have, train, 'sampler.n_per_class', s.n_per_class, grp)}"
            )
    elif batch_kind in ("pairs", "triplets") and _fits(train, 2, False) < 2:
        problems.append("pairs and triplets need at least 2 training classes with >= 2 images each")
    if val is not None:
        need = v.n_shot + v.n_query
        have = _fits(val, need, v.within_group)
        if have < v.n_way:
            vgrp = " or --set validation.within_group=false" if v.within_group else ""
            if not v.within_group:
                where = "the held-out split"
            elif config.data.split_by == "group":
                where = "one held-out group"
            else:  # held-out classes, episodes drawn among those of one group (validation.within_group)
                where = "one group of the held-out classes"
            problems.append(
                f"validation.n_way = {v.n_way} but {where} "
                f"has only {have} classes with >= {need} images (validation.n_shot + validation.n_query); "
                f"{_try('validation.n_way', have, val, 'validation.n_shot + validation.n_query', need, vgrp)}, or hold out more with --set data.val=N"
            )
    if problems:
        raise ConfigError("; ".join(problems))


def held_out_names(split_by: str, val: Any | None) -> dict[str, list[str]]:
    """What a run held out, for its ``model.json``: ``{"val_groups": [...], "val_class_names": [...]}``.

    ``val_groups`` lists named groups only (a flat folder of classes has one unnamed group,
    which is not a held-out group)."""
    if val is None:
        return {"val_groups": [], "val_class_names": []}
    groups = sorted({val.group_names[int(g)] for g in val.class_groups.tolist()} - {""})
    return {"val_groups": groups if split_by == "group" else [], "val_class_names": list(val.class_names)}


def describe_held_out(split_by: str, val: Any, limit: int = 12) -> str:
    """One line: ``held out 5 classes for validation: s1, s4, ...`` (or the groups)."""
    names = held_out_names(split_by, val)
    shown, what = (names["val_groups"], "groups") if names["val_groups"] else (names["val_class_names"], "classes")
    text = ", ".join(shown[:limit]) + (f", ... ({len(shown) - limit} more)" if len(shown) > limit else "")
    extra = f" ({val.n_classes} classes)" if what == "groups" else ""
    return f"held out {len(shown)} {what}{extra} for validation: {text}"
