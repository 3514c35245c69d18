"""``twinshot evaluate`` (filled in by the evaluation work)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Evaluate a model with the field's standard protocols.", no_args_is_help=True)
