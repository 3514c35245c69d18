"""``twinshot embed``: embed every image of a labelled folder into a .npz/.npy file, in
parallel worker processes (see :mod:`twinshot.gallery.bulk`)."""

from __future__ import annotations

import sys
from typing import Any

import typer

from twinshot.cli.output import JSON_HELP as _JSON_HELP
from twinshot.cli.output import emit_json as _emit_json


def embed(
    model: str = typer.Argument(..., help="A shipped model name, a checkpoint or run directory, or an ONNX export (.onnx)."),
    folder: str = typer.Argument(..., help="A folder (or .zip) with one sub-folder of images per class."),
    out: str = typer.Argument(..., help="The output: .npz (embeddings, labels, class_names, paths, fingerprint) or .npy (embeddings)."),
    workers: int = typer.Option(2, "--workers", help="Worker processes."),
    threads: int = typer.Option(1, "--threads", help="Torch threads per worker."),
    inference: str = typer.Option("torch", "--inference", help="Embed with 'torch' or 'onnx'."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Embed every image of FOLDER with MODEL into OUT, in parallel worker processes."""
    import contextlib

    from twinshot.gallery.bulk import BulkConfig, embed_folder

    config = BulkConfig(workers=workers, threads=threads)
    with contextlib.ExitStack() as stack:
        report: Any = None
        if progress and sys.stderr.isatty():
            from twinshot.cli.gallery import _progress_bar

            bar = stack.enter_context(_progress_bar("embed"))
            task = bar.add_task("embed", total=None)
            report = lambda done, total: bar.update(task, completed=done, total=total)  # noqa: E731
        result = embed_folder(model, folder, out, config, inference=inference, progress=report)
    if as_json:
        _emit_json(result)
    else:
        typer.echo(f"embedded {result['n_images']} images ({result['dim']}-d) into {out} in {result['seconds']:.1f} s")
