"""``twinshot models``: what models and components are available."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="List shipped models and the registered encoders, heads and losses.", no_args_is_help=True)


@app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """List the models shipped with the package and the registered encoders and heads."""
    from twinshot.models import ENCODERS, HEADS, shipped_models

    out = {"shipped": shipped_models(), "encoders": ENCODERS.names(), "heads": HEADS.names()}
    if as_json:
        typer.echo(json.dumps(out))
        return
    for key, names in out.items():
        typer.echo(f"{key}: {', '.join(names) or '(none)'}")
