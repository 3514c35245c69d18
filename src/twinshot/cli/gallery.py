"""``twinshot gallery``: a persistent gallery of enrolled identities (one SQLite file).

Each command parses its arguments, calls one function or method of
:mod:`twinshot.gallery` and prints the result (``--json``: one JSON object; for
``identify``, a JSON list with one object per query).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Optional

import typer

from twinshot.cli.output import JSON_HELP as _JSON_HELP
from twinshot.cli.output import emit_json as _emit_json

app = typer.Typer(help="A persistent gallery: enroll, identify, verify, search, calibrate.", no_args_is_help=True)

_GALLERY = "The gallery file (SQLite)."
_MODEL_OPT = "Use this model instead of the one stored with the gallery (must have the same fingerprint)."
_INFERENCE_HELP = "Embed with 'auto' (ONNX Runtime when installed, the model exported once to a cache; else torch), 'torch' or 'onnx'."
_INDEX_HELP = "Search with 'exact', 'hnsw' (faiss, approximate) or 'auto' (hnsw for very large galleries)."


def _open(gallery: str, model: Optional[str], index: str = "auto", inference: str = "auto") -> Any:
    from twinshot.gallery import Gallery

    return Gallery.open(gallery, model, index=index, inference=inference)


def _fmt(x: Optional[float]) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.3f}"


@app.command("create")
def create(
    gallery: str = typer.Argument(..., help=_GALLERY),
    model: str = typer.Option(..., "--model", help="A shipped model name, a checkpoint or a training run directory, or an ONNX export (.onnx)."),
    keep_images: bool = typer.Option(False, "--keep-images", help="Also store each reference image (allows `reembed` later)."),
    rule: str = typer.Option("max", "--rule", help="Combine several references of one identity by 'max' or 'mean' of their scores."),
    threshold: float = typer.Option(0.0, "--threshold", help="Initial acceptance threshold (a logit) until calibrated."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    inference: str = typer.Option("auto", "--inference", help=_INFERENCE_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Create an empty gallery for MODEL."""
    from twinshot.gallery import Gallery

    with Gallery.create(
        gallery, model, keep_images=keep_images, rule=rule, threshold=threshold, overwrite=force, inference=inference
    ) as g:
        info = g.info()
    if as_json:
        _emit_json(info)
    else:
        typer.echo(f"created {gallery} for model {info['model'] or '(in memory)'} (dim {info['dim']}, rule {info['rule']})")


@app.command("enroll")
def enroll(
    gallery: str = typer.Argument(..., help=_GALLERY),
    identity: str = typer.Argument(..., help="The identity's name."),
    images: list[str] = typer.Argument(..., help="One or more reference images of it."),
    metadata: Optional[str] = typer.Option(None, "--metadata", help='A JSON object stored with the identity, e.g. \'{"badge": 17}\'.'),
    replace: bool = typer.Option(False, "--replace", help="If IDENTITY is enrolled, replace its references."),
    add: bool = typer.Option(False, "--add", help="If IDENTITY is enrolled, add these references to its own."),
    model: Optional[str] = typer.Option(None, "--model", help=_MODEL_OPT),
    inference: str = typer.Option("auto", "--inference", help=_INFERENCE_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Enroll IDENTITY with one or more reference IMAGES.

    One transaction. An identity already enrolled is refused unless --replace or --add.
    """
    from twinshot.errors import DataError

    meta = None
    if metadata is not None:
        try:
            meta = json.loads(metadata)
        except ValueError as exc:
            raise DataError(f"--metadata is not valid JSON ({exc})") from None
    with _open(gallery, model, inference=inference) as g:
        result = g.enroll(identity, images, meta, replace=replace, add=add)
    if as_json:
        _emit_json({"gallery": gallery, **result.to_dict()})
    else:
        verb = "enrolled" if result.created else ("replaced" if result.replaced else "added to")
        typer.echo(f"{verb} {identity!r}: {len(result.image_ids)} reference(s)")


@app.command("enroll-folder")
def enroll_folder(
    gallery: str = typer.Argument(..., help=_GALLERY),
    folder: str = typer.Argument(..., help="A folder (or .zip) with one sub-folder of images per identity."),
    replace: bool = typer.Option(False, "--replace", help="Replace the references of identities already enrolled."),
    add: bool = typer.Option(False, "--add", help="Add to the references of identities already enrolled."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
    model: Optional[str] = typer.Option(None, "--model", help=_MODEL_OPT),
    inference: str = typer.Option("auto", "--inference", help=_INFERENCE_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Enroll every sub-folder of FOLDER as one identity, in one transaction.

    Identities are named by the sub-folder's path; images are decoded and embedded in batches.
    """
    with _open(gallery, model, inference=inference) as g:
        if progress and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            tasks: dict[str, Any] = {}
            with Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            ) as bar:

                def report(stage: str, done: int, total: int) -> None:
                    if stage not in tasks:
                        tasks[stage] = bar.add_task(stage, total=total)
                    bar.update(tasks[stage], completed=done, total=total)

                results = g.enroll_folder(folder, replace=replace, add=add, progress=report)
        else:
            results = g.enroll_folder(folder, replace=replace, add=add)
        n_embeddings = g.n_embeddings
    if as_json:
        _emit_json(
            {
                "gallery": gallery,
                "identities": len(results),
                "references": sum(len(r.image_ids) for r in results),
                "gallery_embeddings": n_embeddings,
                "enrolled": [r.to_dict() for r in results],
            }
        )
    else:
        typer.echo(f"enrolled {len(results)} identities, {sum(len(r.image_ids) for r in results)} references, from {folder}")


@app.command("identify")
def identify(
    gallery: str = typer.Argument(..., help=_GALLERY),
    images: list[str] = typer.Argument(..., help="Query images."),
    k: int = typer.Option(5, "--k", help="Candidates per query."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Acceptance threshold (a logit); default: the gallery's."),
    rule: Optional[str] = typer.Option(None, "--rule", help="'max' or 'mean'; default: the gallery's."),
    index: str = typer.Option("auto", "--index", help=_INDEX_HELP),
    model: Optional[str] = typer.Option(None, "--model", help=_MODEL_OPT),
    inference: str = typer.Option("auto", "--inference", help=_INFERENCE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list, one object per query."),
) -> None:
    """Who is in each image? The best identity above the threshold, or unknown."""
    with _open(gallery, model, index, inference) as g:
        results = g.identify(images, k=k, threshold=threshold, rule=rule)
    if as_json:
        _emit_json([{"image": img, **r.to_dict()} for img, r in zip(images, results)])
        return
    for img, r in zip(images, results):
        who = r.identity if r.identity is not None else "unknown"
        typer.echo(f"{img}: {who} (score {_fmt(r.score)}, p {r.probability:.3f}, threshold {r.threshold:.3f})")
        for c in r.candidates:
            typer.echo(f"    {c.identity}: score {_fmt(c.score)}, p {c.probability:.3f}")


@app.command("search")
def search(
    gallery: str = typer.Argument(..., help=_GALLERY),
    images: list[str] = typer.Argument(..., help="Query images."),
    k: int = typer.Option(10, "--k", help="Nearest enrolled images per query."),
    index: str = typer.Option("auto", "--index", help=_INDEX_HELP),
    model: Optional[str] = typer.Option(None, "--model", help=_MODEL_OPT),
    inference: str = typer.Option("auto", "--inference", help=_INFERENCE_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """The K enrolled images most like each query (image retrieval)."""
    with _open(gallery, model, index, inference) as g:
        result = g.search(images, k=k)
    queries = [{"image": img, "neighbours": [n.to_dict() for n in result.neighbours(i)]} for i, img in enumerate(images)]
    if as_json:
        _emit_json({"gallery": gallery, "k": k, "results": queries})
        return
    for q in queries:
        typer.echo(f"{q['image']}:")
        for n in q["neighbours"]:
            typer.echo(f"    image {n['image_id']} ({n['identity']}): score {_fmt(n['score'])}, p {n['probability']:.3f}")


@app.command("remove")
def remove(
    gallery: str = typer.Argument(..., help=_GALLERY),
    identity: str = typer.Argument(..., help="The identity to remove, with all its references."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Remove IDENTITY and its references (one transaction)."""
    from twinshot.gallery import remove_identity

    n = remove_identity(gallery, identity)
    if as_json:
        _emit_json({"gallery": gallery, "identity": identity, "removed": n})
    else:
        typer.echo(f"removed {identity!r} ({n} reference(s))")


@app.command("list")
def list_gallery(
    gallery: str = typer.Argument(..., help=_GALLERY),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """The gallery's settings and enrolled identities."""
    from twinshot.gallery import describe

    info = describe(gallery)
    if as_json:
        _emit_json(info)
        return
    typer.echo(
        f"{info['gallery']}: {info['n_identities']} identities, {info['n_embeddings']} references; "
        f"model {info['model'] or '?'}; rule {info['rule']}; threshold {info['threshold']:.4f} "
        f"({(info['calibration_report'] or {}).get('target', 'not calibrated')})"
    )
    for r in info["identities"]:
        meta = f" {json.dumps(r['metadata'])}" if r["metadata"] else ""
        typer.echo(f"  {r['name']}: {r['references']} reference(s){meta}")


@app.command("calibrate")
def calibrate(
    gallery: str = typer.Argument(..., help=_GALLERY),
    pairs: Optional[str] = typer.Option(None, "--pairs", help="A pairs CSV with columns path1,path2,same."),
    folder: Optional[str] = typer.Option(None, "--folder", help="A labelled folder (or zip) of class sub-folders; pairs are drawn from it."),
    far: Optional[float] = typer.Option(None, "--far", help="Target false accept rate, e.g. 0.001."),
    eer: bool = typer.Option(False, "--eer", help="Put the threshold at the equal error rate."),
    method: str = typer.Option("platt", "--method", help="Probability calibration: 'platt', 'isotonic' or 'none'."),
    n_pairs: int = typer.Option(4000, "--n-pairs", help="Pairs drawn from --folder (half genuine, half impostor)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the pair drawing and the bootstrap."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the 95% intervals."),
    model: Optional[str] = typer.Option(None, "--model", help=_MODEL_OPT),
    inference: str = typer.Option("auto", "--inference", help=_INFERENCE_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Fit and store the threshold (--far RATE or --eer) and calibrated probabilities.

    Use labelled data that is not the gallery: a pairs CSV or a folder of class sub-folders.
    """
    with _open(gallery, model, inference=inference) as g:
        report = g.calibrate(
            pairs=pairs, folder=folder, far=far, eer=eer, method=method, n_pairs=n_pairs, seed=seed,
            n_boot=bootstrap, progress=not as_json and sys.stderr.isatty(),
        )
    if as_json:
        _emit_json({"gallery": gallery, **report.to_dict()})
        return
    typer.echo(
        f"threshold {report.threshold:.4f} ({report.target}; p {report.probability_at_threshold:.3f}) from "
        f"{report.n_genuine} genuine / {report.n_impostor} impostor pairs\n"
        f"  FAR {report.far:.4f} [{report.far_ci95[0]:.4f}, {report.far_ci95[1]:.4f}]  "
        f"FRR {report.frr:.4f} [{report.frr_ci95[0]:.4f}, {report.frr_ci95[1]:.4f}]  (95% bootstrap)\n"
        f"  FAR {report.far:.4f} [{report.far_exact95[0]:.4f}, {report.far_exact95[1]:.4f}]  "
        f"FRR {report.frr:.4f} [{report.frr_exact95[0]:.4f}, {report.frr_exact95[1]:.4f}]  (95% exact, Clopper-Pearson)\n"
        f"  EER {report.eer:.4f}; {report.calibration.method} calibration: ECE {report.ece_before:.3f} -> {report.ece_after:.3f}"
    )


@app.command("reembed")
def reembed(
    gallery: str = typer.Argument(..., help=_GALLERY),
    model: str = typer.Option(..., "--model", help="The new model."),
    inference: str = typer.Option("auto", "--inference", help=_INFERENCE_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Migrate the gallery to a new model by re-embedding its kept images.

    Needs a gallery created with --keep-images. The threshold and calibration are reset.
    """
    from twinshot.gallery import reembed as do_reembed

    g, summary = do_reembed(gallery, model, inference=inference)
    g.close()
    if as_json:
        _emit_json(summary)
    else:
        typer.echo(f"re-embedded {summary['embeddings']} references with {summary['model']}; calibrate again")


@app.command("build-index")
def build_index(
    gallery: str = typer.Argument(..., help=_GALLERY),
    model: Optional[str] = typer.Option(None, "--model", help=_MODEL_OPT),
    inference: str = typer.Option("auto", "--inference", help=_INFERENCE_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Build the approximate (faiss HNSW) index now and store it in the gallery file."""
    with _open(gallery, model, "hnsw", inference) as g:
        info = g.build_index()
    if as_json:
        _emit_json({"gallery": gallery, **info})
    else:
        typer.echo(f"built {info['kind']} index over {info['rows']} references")


@app.command("verify")
def verify_claim(
    gallery: str = typer.Argument(..., help=_GALLERY),
    identity: str = typer.Argument(..., help="The claimed identity (enrolled)."),
    image: str = typer.Argument(..., help="The questioned image."),
    model: Optional[str] = typer.Option(None, "--model", help=_MODEL_OPT),
    inference: str = typer.Option("auto", "--inference", help=_INFERENCE_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Is IMAGE of the claimed IDENTITY? Compared with all of IDENTITY's references under the
    gallery's rule, accepted when the score reaches the gallery's threshold."""
    with _open(gallery, model, inference=inference) as g:
        result = g.verify_claim(identity, image)
    if as_json:
        _emit_json({"image": image, **result.to_dict()})
        return
    verdict = "accepted" if result.same else "rejected"
    typer.echo(
        f"{image}: {verdict} as {identity} (score {_fmt(result.score)} vs threshold {_fmt(result.threshold)}, "
        f"{result.rule} over {result.references} reference{'s' * (result.references != 1)}, p {result.probability:.3f})"
    )
