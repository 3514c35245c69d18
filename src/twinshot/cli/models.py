"""``twinshot models``: what models and components are available."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="List shipped models and the registered encoders, heads and losses.", no_args_is_help=True)


@app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Describe the shipped models (data, encoder, head, loss, validation accuracy) and list the
    registered encoders, heads and losses."""
    from twinshot.models.catalog import catalog

    out = catalog()
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo("shipped models (use the name wherever a model goes):")
    for m in out["shipped"]:
        acc = m["validation"]["accuracy"]
        acc_text = f"; {100 * acc:.1f}% {m['validation']['protocol']}" if acc is not None else ""
        typer.echo(f"  {m['name']}: {m['description']}")
        typer.echo(
            f"      {m['encoder']} encoder{f' ({d}-d)' if (d := m['embedding_dim']) else ''}, {m['head']} head, "
            f"{f'trained with the {loss} loss' if (loss := m['loss']) else 'not trained by twinshot'}; "
            f"input {m['input']}{acc_text}"
        )
    for key in ("encoders", "heads", "losses"):
        typer.echo(f"{key}:")
        for entry in out[key]:
            typer.echo(f"  {entry['name']}: {entry['description']}")
