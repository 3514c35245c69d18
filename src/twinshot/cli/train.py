"""``twinshot train`` (filled in by the training work)."""

from __future__ import annotations

import typer


def train() -> None:
    """Train a Siamese network from a TOML config and/or flags."""
    raise typer.Exit(1)
