"""``twinshot train``: parse the flags, build the config, call :func:`twinshot.training.train`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer


def _fmt_pct(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def train(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="New run directory (checkpoints, metrics, plot)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML config file (overrides the preset)."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Start from a shipped preset: omniglot, omniglot-minimal, faces-orl, faces-lfw, faces-lfw-scratch, signatures, signatures-cedar."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this run exactly where it stopped."),
    data: Optional[List[str]] = typer.Option(None, "--data", help="Dataset folder or zip (repeat to merge several); sets data.sources."),
    set_: Optional[List[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override any config key: --set section.key=value (TOML value)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="run.epochs"),
    steps_per_epoch: Optional[int] = typer.Option(None, "--steps-per-epoch", help="run.steps_per_epoch"),
    time_budget: Optional[str] = typer.Option(None, "--time-budget", help="run.time_budget: wall-clock limit, e.g. 25m, 1h, 900."),
    seed: Optional[int] = typer.Option(None, "--seed", help="run.seed"),
    threads: Optional[int] = typer.Option(None, "--threads", help="run.threads (0: all available cores)"),
    precision: Optional[str] = typer.Option(None, "--precision", help="run.precision: fp32, bf16 (mixed precision, fast on AVX512-BF16/AMX CPUs) or auto (bf16 where the CPU has it)"),
    lr: Optional[float] = typer.Option(None, "--lr", help="optimizer.lr"),
    loss: Optional[str] = typer.Option(None, "--loss", help="loss.name: prototypical, contrastive, triplet, bce, arcface, cosface, normalized_softmax"),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="model.encoder: compact, koch"),
    head: Optional[str] = typer.Option(None, "--head", help="model.head: euclidean, cosine, weighted_l1"),
    size: Optional[int] = typer.Option(None, "--size", help="model.preprocessing.size (square side in pixels)"),
    augmentation: Optional[str] = typer.Option(None, "--augmentation", help="augmentation.name: koch_affine, signature_strokes, none"),
    patience: Optional[int] = typer.Option(None, "--patience", help="early_stopping.patience (epochs; 0: off)"),
    init_from: Optional[str] = typer.Option(None, "--init-from", help="run.init_from: start from these weights (a shipped model's name or a run directory; [model] must match)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object with the outcome."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a Siamese network from a preset, a TOML config and/or flags.

    Writes RUN_DIR/config.toml, metrics.csv, epochs.csv, best/ and last/ checkpoints and training.png; prints where the run is and its best validation accuracy. Ctrl-C saves a resumable checkpoint (continue with --resume RUN_DIR).
    """
    from twinshot.errors import ConfigError
    from twinshot.training import load_config
    from twinshot.training import train as run_training
    from twinshot.training.distributed import DistributedConfig, distributed_session

    named = {
        "run.epochs": epochs,
        "run.steps_per_epoch": steps_per_epoch,
        "run.time_budget": time_budget,
        "run.seed": seed,
        "run.threads": threads,
        "run.precision": precision,
        "optimizer.lr": lr,
        "loss.name": loss,
        "model.encoder": encoder,
        "model.head": head,
        "model.preprocessing.size": [size, size] if size is not None else None,
        "augmentation.name": augmentation,
        "early_stopping.patience": patience,
        "run.init_from": init_from,
        "data.sources": list(data) if data else None,
    }
    overrides: dict = {k: v for k, v in named.items() if v is not None}
    from twinshot.training.toml import parse_value

    for item in set_ or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        key, _, value = item.partition("=")
        overrides[key.strip()] = parse_value(value.strip())

    # Under torchrun (its variables are set): one process of a data-parallel run.
    distributed = DistributedConfig.from_torchrun(os.environ)
    distributed_main = distributed is None or distributed.rank == 0
    with distributed_session(distributed):
        if resume is not None:
            if out is not None and Path(out) != Path(resume):
                raise ConfigError("give either --out (a new run) or --resume RUN_DIR, not both")
            if config is not None or preset is not None:
                raise ConfigError("--resume uses the run's own config.toml; drop --config/--preset")
            result = run_training(None, resume, resume=True, overrides=overrides or None, progress=not (quiet or json_out),
                                  extra={"resume_command": "twinshot " + " ".join(sys.argv[1:])})
        else:
            if out is None:
                raise ConfigError("--out RUN_DIR is required (or --resume RUN_DIR)")
            cfg = load_config(config, preset=preset, overrides=overrides)
            if config is None and preset is None and "data.sources" not in overrides and not quiet and distributed_main:
                typer.echo(
                    f"note: no --preset, --config or --data: training on the default data, Omniglot "
                    f"({', '.join(cfg.data.sources)})", err=True,
                )
            result = run_training(cfg, out, progress=not (quiet or json_out),
                                  extra={"command": "twinshot " + " ".join(sys.argv[1:]), "preset": preset})
    if distributed is not None and distributed.rank != 0:  # rank 0 reports for the run
        if result.interrupted:
            raise typer.Exit(130)
        return

    summary = result.to_dict()
    if json_out:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"run: {result.run_dir}")
        if result.interrupted:
            typer.echo(f"interrupted at step {result.steps}; resume with: twinshot train --resume {result.run_dir}")
        else:
            acc, ci = summary["best_accuracy"], summary["best_ci95"]
            if acc is not None:
                ci_text = f" ± {_fmt_pct(ci)}" if ci is not None else ""
                typer.echo(
                    f"best validation accuracy: {_fmt_pct(acc)}{ci_text} (error {_fmt_pct(1 - acc)}) "
                    f"at epoch {result.best_epoch}, step {result.best_step}"
                )
            ips = summary["images_per_second"]
            typer.echo(
                f"{result.steps} steps, {result.epochs} epochs, {result.elapsed:.0f} s"
                + (f", {ips:,.0f} images/s" if ips else "")
                + f" ({result.stopped})"
            )
            typer.echo(f"model: {result.run_dir / 'best'}")
    if result.interrupted:
        raise typer.Exit(130)
