"""``twinshot report``: parse the flags, call :func:`twinshot.report.build_report`, print."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer


def report(
    model: str = typer.Argument(..., metavar="MODEL", help="A shipped model name, a checkpoint directory, or a training run directory."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="Labelled pairs CSV (path1,path2,same)."),
    folder: Optional[Path] = typer.Option(None, "--folder", help="Folder (or zip) of class folders: all pairs, plus N-way one-shot accuracy."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder (report.html, report.json, PNG figures)."),
    far: float = typer.Option(1e-3, "--far", help="Target false accept rate for the threshold."),
    n_way: Optional[int] = typer.Option(None, "--n-way", help="Classes per one-shot episode (folder only; default min(10, classes))."),
    episodes: int = typer.Option(1000, "--episodes", help="One-shot episodes (folder only)."),
    worst: int = typer.Option(8, "--worst", help="How many worst false accepts / rejects to show."),
    map_method: str = typer.Option("auto", "--map", help="Embedding map: auto, pca or tsne."),
    seed: int = typer.Option(0, "--seed", help="Seeds episodes, subsampling, bootstrap and t-SNE."),
    open_set: Optional[int] = typer.Option(None, "--open-set", help="Folder only: also the open-set protocol with this many enrolled classes (DIR at FPIR, open-set DET)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a readable summary."),
) -> None:
    """Write a verification report for MODEL on labelled pairs (--pairs) or a labelled folder (--folder).

    The report folder gets report.html (self-contained: ROC and DET with AUC and EER, score histograms with the threshold, FAR/FRR at the threshold for --far with bootstrap 95% intervals, N-way one-shot accuracy for a folder, the worst false accepts and rejects, a 2-D map of the embeddings), the same figures as PNG files and report.json with every number.
    """
    from twinshot.report import build_report

    result = build_report(
        model, out, pairs=pairs, folder=folder, far=far, n_way=n_way, episodes=episodes,
        worst=worst, map_method=map_method, seed=seed, open_set=open_set, progress=not as_json and sys.stderr.isatty(),
    )
    d = result.to_dict()
    if as_json:
        typer.echo(json.dumps(d))
        return
    pct = lambda x: "n/a" if x is None else f"{100 * x:.2f}%"  # noqa: E731
    typer.echo(f"report: {d['html']}")
    typer.echo(f"pairs: {d['n_genuine']} genuine, {d['n_impostor']} impostor ({d['n_images']} images, {d['n_classes']} classes)")
    typer.echo(f"AUC {d['auc']:.4f}  EER {pct(d['eer'])} (score threshold {d['eer_threshold']:.3f})")
    typer.echo(
        f"score threshold {d['threshold']:.3f} for FAR <= {d['target_far']:g}: FAR {pct(d['far'])} "
        f"[{pct(d['far_ci95'][0])}, {pct(d['far_ci95'][1])}], FRR {pct(d['frr'])} [{pct(d['frr_ci95'][0])}, {pct(d['frr_ci95'][1])}]"
        + (f" (bootstrap; exact: FAR [{pct(d['far_exact95'][0])}, {pct(d['far_exact95'][1])}], "
           f"FRR [{pct(d['frr_exact95'][0])}, {pct(d['frr_exact95'][1])}])" if d.get("far_exact95") else "")
    )
    typer.echo("(both thresholds are on the pair score, the head's logit: higher is more alike, and a pair is accepted at or above it)")
    ep = d["episodes"]
    if ep:
        ci = "" if ep["ci95"] is None else f" ± {pct(ep['ci95'])}"
        typer.echo(f"{ep['n_way']}-way {ep['n_shot']}-shot accuracy: {pct(ep['accuracy'])}{ci} over {ep['episodes']} episodes")
    o = d.get("open_set")
    if o:
        typer.echo(
            f"open set ({o['enrolled']} enrolled of {o['n_classes']}): rank-1 {pct(o['rank1']['mean'])}, "
            + ", ".join(f"DIR at FPIR {k} {pct(v['mean'])}" for k, v in o["dir_at_fpir"].items())
        )
