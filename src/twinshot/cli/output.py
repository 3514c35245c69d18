"""What every command shares for printing: strict JSON (no NaN) on stdout."""

from __future__ import annotations

import json
import math
from typing import Any

import typer

JSON_HELP = "Print one JSON object instead of a readable summary."


def clean(value: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def emit_json(result: Any) -> None:
    """Print ``result`` as one line of strict JSON."""
    typer.echo(json.dumps(clean(result), allow_nan=False))
