"""``twinshot demo``: the README's main job (logic in :mod:`twinshot.demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _default_out() -> Path:
    """``runs/demo``, or ``runs/demo-2``, ... when that exists already."""
    base = Path("runs") / "demo"
    path, n = base, 1
    while path.exists() and any(path.iterdir()):
        n += 1
        path = base.with_name(f"demo-{n}")
    return path


def demo(
    data: Path = typer.Option(Path("../shared/datasets/omniglot/images_background.zip"), "--data",
                              help="The Omniglot background set (zip or folder)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for the run and the gallery (default runs/demo)."),
    steps: int = typer.Option(1500, "--steps", help="Training steps of the quick model."),
    time_budget: str = typer.Option("4m", "--time-budget", help="Wall-clock cap of the training, e.g. 4m, 90s, 240 (seconds)."),
    episodes: int = typer.Option(1000, "--episodes", help="Episodes of the final 20-way one-shot evaluation."),
    seed: int = typer.Option(0, "--seed", help="Seed of training and of the demo's choices."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the results (the story goes to stderr)."),
) -> None:
    """Train a quick Omniglot model, measure one-shot accuracy, recognise characters from one drawing each.

    Loads the Omniglot background set, holds out 5 alphabets, trains a compact network for a few minutes, reports within-alphabet 20-way one-shot accuracy on the held-out alphabets, then enrolls one drawing of each of a few held-out characters in a gallery, recognises other people's drawings of them and rejects a character that was not enrolled.
    """
    from twinshot.cli.output import emit_json
    from twinshot.demo import run_demo
    from twinshot.training.config import parse_duration

    budget = parse_duration(time_budget, name="--time-budget")
    result = run_demo(
        data=data, out=out or _default_out(), steps=steps, time_budget=budget, episodes=episodes,
        seed=seed, progress=not (quiet or as_json), say=(lambda text: typer.echo(text, err=True)) if as_json else typer.echo,
    )
    if as_json:
        emit_json(result.to_dict())
