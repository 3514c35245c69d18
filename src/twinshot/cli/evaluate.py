"""``twinshot evaluate``: the field's one-shot protocols and verification metrics.

Each sub-command loads the model, calls one function of :mod:`twinshot.evaluation` and
prints the result (``--json``: one JSON object on stdout).
"""

from __future__ import annotations

import math
import sys
from typing import Optional

import typer

from twinshot.cli.output import JSON_HELP as _JSON_HELP
from twinshot.cli.output import emit_json as _emit_json

app = typer.Typer(help="Evaluate a model with the field's standard protocols.", no_args_is_help=True)

_MODEL_HELP = "A shipped model name, a checkpoint directory, or a training run directory."


def _show_progress(as_json: bool) -> bool:
    return not as_json and sys.stderr.isatty()


def _console():
    from rich.console import Console

    return Console(highlight=False)


@app.command("episodes")
def episodes(
    model: str = typer.Argument(..., metavar="MODEL", help=_MODEL_HELP),
    data: str = typer.Argument(..., metavar="DATA", help="A folder of class sub-folders (or a zip of one)."),
    n_way: int = typer.Option(20, "--n-way", help="Classes per episode."),
    n_shot: int = typer.Option(1, "--n-shot", help="Support images per class."),
    n_query: int = typer.Option(1, "--n-query", help="Query images per class."),
    n_episodes: int = typer.Option(1000, "--episodes", help="Number of episodes."),
    seed: int = typer.Option(0, "--seed", help="Seed of the episode sampler."),
    within_group: bool = typer.Option(False, "--within-group", help="Draw each episode's classes from one group (alphabet)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Images per embedding batch."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """N-way K-shot accuracy over seeded episodes drawn from DATA, with its 95% CI."""
    from twinshot.data import load_dataset
    from twinshot.evaluation import evaluate_episodes
    from twinshot.models import load_model

    progress = _show_progress(as_json)
    net = load_model(model)
    dataset = load_dataset(data, net.preprocessing, progress=progress)
    result = evaluate_episodes(
        net, dataset, n_way=n_way, n_shot=n_shot, n_query=n_query, episodes=n_episodes,
        seed=seed, within_group=within_group, batch_size=batch_size, progress=progress,
    )
    if as_json:
        out = result.to_dict()
        out.update(model=str(model), data=str(data), n_images=len(dataset), n_classes=dataset.n_classes)
        _emit_json(out)
        return
    ci = f" ± {100 * result.ci95:.2f}%" if math.isfinite(result.ci95) else ""
    queries = f"{result.n_query} quer{'y' if result.n_query == 1 else 'ies'} per class"
    where = "within groups" if result.within_group else "across groups"
    _console().print(
        f"[bold]{result.n_way}-way {result.n_shot}-shot accuracy: {100 * result.accuracy:.2f}%{ci}[/bold] "
        f"(95% CI; {result.episodes} episodes, {queries}, {where}, seed {result.seed}; "
        f"{dataset.n_classes} classes, {len(dataset)} images)"
    )


@app.command("heldout")
def heldout(
    model: str = typer.Argument(..., metavar="MODEL", help="A shipped model name, a checkpoint or a run directory (it must hold its config.toml)."),
    data: list[str] = typer.Option(None, "--data", help="Replaces the run's data sources (where the dataset lives here); repeatable."),
    n_episodes: int = typer.Option(2000, "--episodes", help="Number of episodes."),
    seed: int = typer.Option(1, "--seed", help="Seed of the episodes (the run picked its best epoch on other episodes)."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Accuracy on the classes the model's own training run held out (its seeded split and
    validation protocol, e.g. within-alphabet 20-way one-shot), over fresh episodes."""
    from twinshot.training.heldout import evaluate_heldout

    result = evaluate_heldout(model, data=data or None, episodes=n_episodes, seed=seed, progress=_show_progress(as_json))
    if as_json:
        out = result.to_dict()
        out.update(model=str(model))
        _emit_json(out)
        return
    ci = f" ± {100 * result.ci95:.2f}%" if math.isfinite(result.ci95) else ""
    where = "within groups" if result.within_group else "across groups"
    _console().print(
        f"[bold]{result.n_way}-way {result.n_shot}-shot accuracy on the held-out classes: "
        f"{100 * result.accuracy:.2f}%{ci}[/bold] (95% CI; {result.episodes} episodes, {where}, seed {result.seed})"
    )


@app.command("omniglot-runs")
def omniglot_runs(
    model: str = typer.Argument(..., metavar="MODEL", help=_MODEL_HELP),
    all_runs: str = typer.Argument(..., metavar="ALL_RUNS_ZIP", help="Lake's all_runs.zip (or its unpacked folder)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Images per embedding batch."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Error rate on the 20 official 20-way one-shot runs of Lake et al."""
    from twinshot.evaluation import evaluate_omniglot_runs
    from twinshot.models import load_model

    result = evaluate_omniglot_runs(load_model(model), all_runs, batch_size=batch_size)
    if as_json:
        out = result.to_dict()
        out.update(model=str(model), all_runs=str(all_runs))
        _emit_json(out)
        return
    console = _console()
    console.print(
        f"[bold]error rate: {100 * result.error_rate:.2f}%[/bold] "
        f"(accuracy {100 * result.accuracy:.2f}%; mean of {len(result.runs)} runs of 20-way one-shot)"
    )
    console.print("per run: " + "  ".join(f"{i + 1:02d}:{100 * e:.0f}%" for i, e in enumerate(result.runs)))


@app.command("verification")
def verification(
    model: str = typer.Argument(..., metavar="MODEL", help=_MODEL_HELP),
    pairs: str = typer.Option(..., "--pairs", help="CSV with columns path1,path2,same."),
    batch_size: int = typer.Option(256, "--batch-size", help="Images per embedding batch."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """ROC AUC, equal error rate and TAR at FAR 1e-2 / 1e-3 on labelled pairs."""
    from twinshot.evaluation import evaluate_verification
    from twinshot.models import load_model

    result = evaluate_verification(load_model(model), pairs, batch_size=batch_size, progress=_show_progress(as_json))
    if as_json:
        out = result.to_dict()
        out.update(model=str(model), pairs=str(pairs))
        _emit_json(out)
        return
    console = _console()
    console.print(
        f"[bold]AUC {result.auc:.4f}   EER {100 * result.eer:.2f}%[/bold] "
        f"(at logit {result.eer_threshold:.3f}; {result.n_genuine} same, {result.n_impostor} different pairs)"
    )
    console.print("TAR at FAR: " + ", ".join(f"{k}: {100 * v:.2f}%" for k, v in result.tar_at_far.items()))


@app.command("cedar-claims")
def cedar_claims(
    model: str = typer.Argument(..., metavar="MODEL", help=_MODEL_HELP),
    data: str = typer.Argument(..., metavar="CEDAR", help="The CEDAR folder (full_org/, full_forg/)."),
    writers: Optional[str] = typer.Option(None, "--writers", help="Writers to enroll and question, e.g. 36-45 (default: all)."),
    references: str = typer.Option("1,5,12", "--references", help="Numbers of enrolled genuine references per writer."),
    rule: str = typer.Option("max", "--rule", help="Combine a writer's references by 'max' or 'mean'."),
    seed: int = typer.Option(0, "--seed", help="Seeds which genuine signatures are references."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Writer-dependent CEDAR verification: enroll R genuine references per writer, verify
    questioned signatures against the claimed writer; EER and FRR at FAR 1% for skilled and
    random forgeries, for each R."""
    from twinshot.errors import ConfigError
    from twinshot.evaluation.claims import cedar_writer_dependent
    from twinshot.models import load_model

    try:
        rs = [int(r) for r in references.split(",") if r.strip()]
    except ValueError:
        raise ConfigError(f"--references must be numbers separated by commas, got {references!r}") from None
    results = cedar_writer_dependent(
        load_model(model), data, writers, references=rs, rule=rule, seed=seed, progress=_show_progress(as_json)
    )
    if as_json:
        _emit_json({"model": str(model), "results": [r.to_dict() for r in results]})
        return
    console = _console()
    for r in results:
        parts = [
            f"{kind}: EER {100 * c.eer:.2f}%, FRR {100 * c.frr_at_far['1e-2']:.2f}% at FAR 1% "
            f"({c.n_genuine} genuine, {c.n_impostor} {kind} claims)"
            for kind, c in r.rates.items()
        ]
        console.print(f"[bold]R = {r.references:2d}[/bold] ({r.rule})  " + "   ".join(parts))
