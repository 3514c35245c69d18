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
_EXCLUDE_HELP = "Comma-separated groups (alphabets) of DATA to leave out, e.g. those a model was trained on."


def _without_groups(dataset, exclude: str):
    """``dataset`` less the groups named in ``exclude`` (comma-separated; "" keeps all)."""
    from twinshot.data.groups import parse_group_list, select_groups

    return select_groups(dataset, drop=parse_group_list(exclude), what="--exclude-groups")


def _show_progress(as_json: bool) -> bool:
    return not as_json and sys.stderr.isatty()


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)  # piped output: long lines stay whole


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
    exclude_groups: str = typer.Option("", "--exclude-groups", help=_EXCLUDE_HELP),
    batch_size: int = typer.Option(256, "--batch-size", help="Images per embedding batch."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """N-way K-shot accuracy over seeded episodes drawn from DATA, with its 95% CI."""
    from twinshot.data import load_dataset
    from twinshot.evaluation import evaluate_episodes
    from twinshot.models import load_model

    progress = _show_progress(as_json)
    net = load_model(model)
    dataset = _without_groups(load_dataset(data, net.preprocessing, progress=progress), exclude_groups)
    result = evaluate_episodes(
        net, dataset, n_way=n_way, n_shot=n_shot, n_query=n_query, episodes=n_episodes,
        seed=seed, within_group=within_group, batch_size=batch_size, progress=progress,
    )
    if as_json:
        out = result.to_dict()
        out.update(model=str(model), data=str(data), exclude_groups=exclude_groups, n_images=len(dataset), n_classes=dataset.n_classes)
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


@app.command("open-set")
def open_set(
    model: str = typer.Argument(..., metavar="MODEL", help=_MODEL_HELP),
    data: Optional[str] = typer.Argument(None, metavar="DATA", help="A folder of class sub-folders (or a zip of one); with --heldout, replaces the run's data sources."),
    enrolled: int = typer.Option(..., "--enrolled", help="Classes to enroll (the gallery size N); the others are strangers."),
    references: int = typer.Option(1, "--references", help="Images enrolled per class."),
    queries: Optional[int] = typer.Option(None, "--queries", help="At most this many query images per class (default: every image not enrolled)."),
    fpir: str = typer.Option("0.01,0.1", "--fpir", help="Target false positive identification rates, comma-separated."),
    seeds: int = typer.Option(5, "--seeds", help="Galleries drawn (the figures are means with 95% intervals over them)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the first draw (draw d uses seed + d)."),
    same_groups: bool = typer.Option(False, "--same-groups", help="Enroll classes from every group (alphabet) the strangers come from."),
    disjoint_groups: bool = typer.Option(False, "--disjoint-groups", help="Enroll classes from some groups, take strangers from the others."),
    rule: str = typer.Option("max", "--rule", help="An identity's score from its references: 'max' or 'mean'."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Also evaluate this fixed threshold (e.g. one calibrated on other data)."),
    tta: str = typer.Option("none", "--tta", help="Test-time augmentation: 'none', 'shifts' or 'shifts+flip'."),
    norm: str = typer.Option("none", "--norm", help="Cohort score normalisation: 'none', 'znorm', 'tnorm', 'snorm' or 'asnorm'."),
    cohort: Optional[str] = typer.Option(None, "--cohort", help="With --norm: a labelled folder (or zip) of other classes, the cohort of impostors."),
    cohort_size: int = typer.Option(1000, "--cohort-size", help="With --norm: at most this many cohort images."),
    top_k: int = typer.Option(100, "--top-k", help="With --norm asnorm: cohort scores kept per side."),
    heldout: bool = typer.Option(False, "--heldout", help="Use the classes MODEL's own training run held out (its config.toml)."),
    exclude_groups: str = typer.Option("", "--exclude-groups", help=_EXCLUDE_HELP),
    batch_size: int = typer.Option(256, "--batch-size", help="Images per embedding batch."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Open-set identification: enroll N classes, query every class; rank-1/5, DIR at FPIR, DET."""
    from twinshot.errors import ConfigError
    from twinshot.evaluation.openset import evaluate_open_set, parse_rates

    rates = parse_rates(fpir)
    if same_groups and disjoint_groups:
        raise ConfigError("give at most one of --same-groups and --disjoint-groups")
    groups = "same" if same_groups else ("disjoint" if disjoint_groups else "any")
    progress = _show_progress(as_json)
    if heldout:
        from twinshot.training.heldout import heldout_dataset

        net, dataset, _ = heldout_dataset(model, data=[data] if data else None, progress=progress)
    else:
        if data is None:
            raise ConfigError("give DATA (a labelled folder or zip), or --heldout")
        from twinshot.data import load_dataset
        from twinshot.models import load_model

        net = load_model(model)
        dataset = load_dataset(data, net.preprocessing, progress=progress)
    dataset = _without_groups(dataset, exclude_groups)
    cohort_set = None
    if cohort is not None:
        from twinshot.data import load_dataset

        cohort_set = load_dataset(cohort, net.preprocessing, progress=progress)
    result = evaluate_open_set(
        net, dataset, enrolled=enrolled, references=references, queries=queries, fpirs=rates, seeds=seeds,
        seed=seed, groups=groups, rule=rule, threshold=threshold, tta=tta, norm=norm, cohort=cohort_set,
        cohort_size=cohort_size, top_k=top_k, batch_size=batch_size, progress=progress,
    )
    out = result.to_dict()
    if as_json:
        out.update(model=str(model), data=str(data) if data else None, heldout=heldout, exclude_groups=exclude_groups, n_classes=dataset.n_classes)
        _emit_json(out)
        return

    def pm(s: dict) -> str:
        return f"{100 * s['mean']:.2f}%" + (f" ± {100 * s['ci95']:.2f}" if s["ci95"] is not None else "")

    console = _console()
    console.print(
        f"[bold]open set: {result.enrolled} of {dataset.n_classes} classes enrolled ({result.references} reference(s) each), "
        f"strangers from {groups} groups; {out['n_mated']:.0f} mated / {out['n_nonmated']:.0f} stranger queries per draw, "
        f"{result.seeds} draw(s) from seed {result.seed}; tta {tta}, norm {norm}[/bold] (95% CI over draws)"
    )
    console.print(f"  closed-set rank-1 {pm(out['rank1'])}   rank-5 {pm(out['rank5'])}   best open-set accuracy {pm(out['best_accuracy'])}")
    for k in out["dir_at_fpir"]:
        console.print(
            f"  FPIR {k}: DIR {pm(out['dir_at_fpir'][k])}   open-set accuracy {pm(out['accuracy_at_fpir'][k])}   "
            f"threshold {out['threshold_at_fpir'][k]['mean']:.3f}"
        )
    if result.threshold is not None:
        console.print(
            f"  at threshold {result.threshold:.3f}: DIR {pm(out['dir_at_threshold'])}   FPIR {pm(out['fpir_at_threshold'])}   "
            f"misidentified {pm(out['misidentified_at_threshold'])}"
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
    """ROC AUC, equal error rate and TAR at FAR 1e-2 / 1e-3 on labelled pairs.

    No pairs CSV? For a folder of class sub-folders, `twinshot report MODEL --folder FOLDER --out DIR` scores all its pairs (the same figures, plus N-way one-shot accuracy)."""
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


@app.command("lfw")
def lfw(
    model: str = typer.Argument(..., metavar="MODEL", help=_MODEL_HELP),
    pairs: str = typer.Argument(..., metavar="PAIRS", help="LFW pairs.txt (official format) or a CSV path1,path2,same[,fold]."),
    images: str = typer.Option(None, "--images", help="Folder of name/name_000N.jpg images (default: the pairs file's folder)."),
    cache: str = typer.Option(None, "--cache", help="Folder to keep the embeddings in (keyed by the model's fingerprint)."),
    fallback_crop: float = typer.Option(0.48, "--fallback-crop", help="For a face-aligning model: embed an image where no face is found from this centred fraction of it (LFW's faces are centred; 0.48 = 120 of 250 px) instead of failing; the number is reported. 0: fail instead."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per embedding batch."),
    face: str = typer.Option("centre", "--face", help="For a face-aligning model, the face of a photo its pair means: 'centre' (LFW's photos are centred on their person) or 'model' (the model's own choice, e.g. the largest)."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """The LFW protocol: per fold, the threshold is chosen on the other folds; mean accuracy
    +- standard error, AUC, EER and TAR at FAR 1e-2 / 1e-3 over all pairs, per-fold table."""
    from twinshot.evaluation import evaluate_lfw
    from twinshot.models import load_model

    result = evaluate_lfw(
        load_model(model), pairs, images=images, cache=cache, fallback_crop=fallback_crop if fallback_crop > 0 else None,
        batch_size=batch_size, progress=_show_progress(as_json), face=face,
    )
    if as_json:
        out = result.to_dict()
        out.update(model=str(model), pairs=str(pairs), face=face)
        _emit_json(out)
        return
    console = _console()
    pooled = result.pooled
    console.print(
        f"[bold]accuracy {100 * result.accuracy:.2f}% ± {100 * result.standard_error:.2f}[/bold] "
        f"(mean ± standard error over {len(result.folds)} folds, threshold from the other folds)"
    )
    if pooled is not None:
        console.print(
            f"AUC {pooled.auc:.4f}   EER {100 * pooled.eer:.2f}%   TAR at FAR: "
            + ", ".join(f"{k}: {100 * v:.2f}%" for k, v in pooled.tar_at_far.items())
            + f"   ({pooled.n_genuine} same, {pooled.n_impostor} different pairs)"
        )
    if result.no_face:
        console.print(f"no face found in {len(result.no_face)} of {result.n_images} images (embedded from their centre crop)")
    console.print("fold  pairs  threshold  accuracy")
    for f in result.folds:
        console.print(f"{f.fold:>4}  {f.n_pairs:>5}  {f.threshold:>9.4f}  {100 * f.accuracy:>7.2f}%")


@app.command("cedar-claims")
def cedar_claims(
    model: str = typer.Argument(..., metavar="MODEL", help=_MODEL_HELP),
    data: str = typer.Argument(..., metavar="CEDAR", help="The CEDAR folder (full_org/, full_forg/)."),
    writers: Optional[str] = typer.Option(None, "--writers", help="Writers to enroll and question, e.g. 36-45 (default: all)."),
    references: str = typer.Option("1,5,12", "--references", help="Numbers of enrolled genuine references per writer."),
    rule: str = typer.Option("max", "--rule", help="Combine a writer's references by 'max' or 'mean'."),
    seed: int = typer.Option(0, "--seed", help="Seeds which genuine signatures are references."),
    scoring: str = typer.Option("gallery", "--scoring", help="'gallery' (the rule on embeddings), 'svm' (one SVM per writer) or 'fused' (the SVM plus the pair model and weight stored with MODEL, e.g. signatures-cedar)."),
    layer: str = typer.Option("grid", "--layer", help="Features of the SVMs: grid, hidden, embedding or hog."),
    cohort: Optional[str] = typer.Option(None, "--cohort", help="The SVMs' negative writers (default: every writer not in --writers); 'enrolled': the other enrolled writers' references (the gallery's default)."),
    augment: int = typer.Option(10, "--augment", help="Distorted copies of each reference added to its SVM's positives."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Writer-dependent CEDAR verification: enroll R genuine references per writer, verify
    questioned signatures against the claimed writer; EER and FRR at FAR 1% for skilled and
    random forgeries, for each R. --scoring svm fits an SVM per writer (its references vs
    the cohort's genuine signatures) on the model's --layer features."""
    from twinshot.errors import ConfigError
    from twinshot.evaluation.claims import cedar_writer_dependent
    from twinshot.models import load_model

    try:
        rs = [int(r) for r in references.split(",") if r.strip()]
    except ValueError:
        raise ConfigError(f"--references must be numbers separated by commas, got {references!r}") from None
    results = cedar_writer_dependent(
        load_model(model), data, writers, references=rs, rule=rule, seed=seed, progress=_show_progress(as_json),
        scoring=scoring, layer=layer, cohort=cohort, augment=augment,
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
        how = r.rule if r.scoring == "gallery" else f"svm on {r.layer}"
        if r.fusion:
            how += f" + {r.fusion['weight']:g} x {r.fusion['combine']} of {r.fusion['pairs_model']}"
        console.print(f"[bold]R = {r.references:2d}[/bold] ({how})  " + "   ".join(parts))
