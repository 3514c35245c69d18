"""``twinshot pairs``: write the protocol pairs of a dataset as ``path1,path2,same[,kind]``
CSVs for ``twinshot evaluate verification`` and ``twinshot report``. Each command parses
its flags, calls one function of :mod:`twinshot.data.datasets` and prints what it wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from twinshot.cli.output import JSON_HELP as _JSON_HELP
from twinshot.cli.output import emit_json as _emit_json

app = typer.Typer(help="Write a dataset's verification pairs as CSVs.", no_args_is_help=True)


@app.command("cedar")
def cedar(
    root: Path = typer.Argument(..., metavar="CEDAR", help="The CEDAR folder (full_org/, full_forg/)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for skilled.csv, random.csv and all.csv."),
    writers: Optional[str] = typer.Option(None, "--writers", help="Writers to use, e.g. 36-45 or 1,3,5-9 (default: all)."),
    random_per_writer: Optional[int] = typer.Option(None, "--random-per-writer", help="Random-forgery pairs per writer (default: as many as its genuine pairs)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the random-forgery pairs."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """CEDAR writer-independent pairs: genuine-genuine pairs of one writer, with skilled
    impostors (a genuine signature vs a forgery of that writer) in skilled.csv and random
    impostors (vs another writer's genuine signature) in random.csv; all.csv has both.
    Every file has a kind column (genuine, skilled, random)."""
    from twinshot.data.datasets.cedar import cedar_pairs_summary, write_cedar_pairs

    files = write_cedar_pairs(root, out, writers, random_per_writer=random_per_writer, seed=seed)
    summary = cedar_pairs_summary(files)
    if as_json:
        _emit_json({"files": {k: str(v) for k, v in files.items()}, "pairs": summary})
        return
    for kind, path in files.items():
        counts = ", ".join(f"{n} {k}" for k, n in summary[kind].items())
        typer.echo(f"{path}: {counts}")
