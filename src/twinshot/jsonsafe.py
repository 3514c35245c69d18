"""Strict JSON for every output of twinshot (the CLI's ``--json`` and the HTTP service)."""

from __future__ import annotations

import math
from typing import Any


def clean(value: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value
