"""What every command shares for printing: strict JSON (no NaN) on stdout."""

from __future__ import annotations

import json
from typing import Any

import typer

from twinshot.jsonsafe import clean

JSON_HELP = "Print one JSON object instead of a readable summary."


def emit_json(result: Any) -> None:
    """Print ``result`` as one line of strict JSON."""
    typer.echo(json.dumps(clean(result), allow_nan=False))
