"""``twinshot export MODEL --format onnx|torchscript --out FILE``."""

from __future__ import annotations

import json
import sys

import typer


def export(
    model: str = typer.Argument(..., help="A shipped model name, a checkpoint or a training run directory."),
    fmt: str = typer.Option(..., "--format", help="onnx or torchscript."),
    out: str = typer.Option(..., "--out", help="The file to write; its JSON sidecar is written as FILE.json."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Export a model's encoder to ONNX or TorchScript, checked against the model.

    The file maps preprocessed float32 images (B, C, H, W) to embeddings (B, D); FILE.json
    holds the preprocessing, the head and its parameters, and the model's fingerprint.
    The export fails, writing nothing, if its embeddings differ from the model's by more
    than 1e-4 on sample batches.
    """
    from twinshot.export.exporter import export_model

    if as_json or not sys.stderr.isatty():
        result = export_model(model, fmt, out, opset=opset)
    else:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=Console(stderr=True), transient=True,
        ) as bar:
            task = bar.add_task("export", total=None)

            def report(stage: str, done: int, total: int) -> None:
                bar.update(task, description=stage, completed=done, total=total)

            result = export_model(model, fmt, out, opset=opset, progress=report)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    batches = " and ".join(str(b) for b in sorted(result.parity))
    typer.echo(
        f"exported the encoder of {result.source or model} to {result.path} ({result.format}, "
        f"{result.bytes / 1e6:.1f} MB, {result.exporter})"
    )
    typer.echo(
        f"parity: max |difference| of embeddings {result.max_abs_diff:.2e} <= {result.tolerance:g} "
        f"(batches of {batches}); sidecar {result.sidecar}"
    )
