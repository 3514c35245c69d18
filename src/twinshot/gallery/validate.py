"""Checks of the numbers a gallery takes (``k``, thresholds) and of the settings it reads
back from its file, so that bad input is refused with one clear line and a damaged file
is named as damaged, never a traceback."""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twinshot.errors import ConfigError, DamagedError
from twinshot.gallery.calibration import Calibration, CalibrationReport

#: Combination rules (repeated from :mod:`twinshot.gallery.gallery` to avoid an import cycle).
_RULES = ("max", "mean")


def check_k(k: Any) -> int:
    """``k`` as an int if it is a whole number >= 1 (any size: callers clamp it to the
    gallery). Raises ConfigError otherwise."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ConfigError(f"k must be a whole number >= 1, got {k!r}")
    if int(k) < 1:
        raise ConfigError(f"k must be >= 1, got {int(k)}")
    return int(k)


def check_threshold(threshold: Any, *, infinite: bool = False) -> float:
    """``threshold`` (a logit) as a float if it is a finite number (or, with ``infinite``,
    +-inf: accept everything / nothing for one call). Raises ConfigError for NaN (a NaN
    threshold would turn every answer into "unknown") and, stored, for infinities."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise ConfigError(f"threshold must be a number, got {threshold!r}")
    value = float(threshold)
    if math.isnan(value) or (math.isinf(value) and not infinite):
        raise ConfigError(f"threshold must be a finite number, got {value}")
    return value


def check_positive(name: str, value: Any, *, minimum: float = 1, integer: bool = True) -> Any:
    """``value`` if it is a (whole, with ``integer``) finite number >= ``minimum``."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(float(value)) or value < minimum:
        raise ConfigError(f"{name} must be a {'whole ' if integer else ''}number >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """A gallery's settings as read (and checked) from its ``meta`` table."""

    rule: str
    threshold: float
    calibration: Calibration
    report: CalibrationReport | None
    generation: int


def read_settings(meta: dict[str, str], path: Path | str) -> Settings:
    """Parse and check the settings; raises DamagedError naming the first bad one."""

    def damaged(what: str) -> DamagedError:
        return DamagedError(f"{path}: the gallery is damaged ({what}); run `twinshot gallery check {path}`")

    rule = meta.get("rule")
    if rule not in _RULES:
        raise damaged(f"its combination rule is {'missing' if rule is None else repr(rule)}")
    try:
        threshold = float(meta["threshold"])
    except (KeyError, ValueError):
        raise damaged("its threshold is missing or not a number") from None
    if not math.isfinite(threshold):
        raise damaged(f"its threshold is {threshold}")
    try:
        calibration = Calibration.from_dict(json.loads(meta["calibration"]))
    except (KeyError, ValueError, TypeError, AttributeError, RecursionError):
        raise damaged("its probability calibration is missing or not valid JSON") from None
    text = meta.get("calibration_report", "")
    try:
        report = CalibrationReport.from_dict(json.loads(text)) if text else None
    except (KeyError, ValueError, TypeError, AttributeError, RecursionError):
        raise damaged("its calibration report is not valid JSON") from None
    try:
        generation = int(meta.get("generation", 0))
    except ValueError:
        raise damaged("its generation counter is not a number") from None
    if not meta.get("fingerprint"):
        raise damaged("its model fingerprint is missing")
    return Settings(rule=rule, threshold=threshold, calibration=calibration, report=report, generation=generation)
