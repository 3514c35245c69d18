"""``twinshot gallery`` (filled in by the gallery work)."""

from __future__ import annotations

import typer

app = typer.Typer(help="A persistent gallery: enroll, identify, verify, search, calibrate.", no_args_is_help=True)
