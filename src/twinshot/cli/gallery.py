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

_GALLERY = (
    "The gallery: a file (SQLite), or a store URI: postgresql://[USER@]HOST[:PORT]/DB/TABLE, "
    "milvus://HOST:PORT/COLLECTION, milvus-lite:///PATH.db/COLLECTION (see docs/gallery.md, Stores)."
)
_MODEL_OPT = "Use this model instead of the one stored with the gallery (must have the same fingerprint)."
_INFERENCE_HELP = "Embed with 'auto' (ONNX Runtime when installed, the model exported once to a cache; else torch), 'torch' or 'onnx'."
_INDEX_HELP = "Search with 'exact', 'hnsw' (faiss, approximate) or 'auto' (hnsw for very large galleries)."


_SEARCH_HELP = "Search 'memory' (load the rows), 'database' (PostgreSQL/Milvus find the candidates: galleries bigger than memory) or 'auto' (database above 2 GiB of vectors where the store and head allow it)."


def _open(gallery: str, model: Optional[str], index: str = "auto", inference: str = "auto", *, readonly: bool = False, search: str = "auto") -> Any:
    from twinshot.gallery import Actor, Gallery

    return Gallery.open(gallery, model, index=index, inference=inference, readonly=readonly, actor=Actor("cli"), search=search)


def _shown(gallery: str) -> str:
    """The gallery as printed: a store URI with its password replaced by ``***``."""
    from twinshot.gallery.stores import redact

    return redact(gallery)


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
        typer.echo(f"created {info['gallery']} for model {info['model'] or '(in memory)'} (dim {info['dim']}, rule {info['rule']})")


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
    from twinshot.gallery.names import parse_metadata

    meta = parse_metadata(metadata, what="--metadata") if metadata is not None else None
    with _open(gallery, model, inference=inference) as g:
        result = g.enroll(identity, images, meta, replace=replace, add=add)
    if as_json:
        _emit_json({"gallery": _shown(gallery), **result.to_dict()})
    else:
        verb = "enrolled" if result.created else ("replaced" if result.replaced else "added to")
        typer.echo(f"{verb} {identity!r}: {len(result.image_ids)} reference(s)")
    _warn_size(gallery)


@app.command("enroll-folder")
def enroll_folder(
    gallery: str = typer.Argument(..., help=_GALLERY),
    folder: str = typer.Argument(..., help="A folder (or .zip) with one sub-folder of images per identity."),
    replace: bool = typer.Option(False, "--replace", help="Replace the references of identities already enrolled."),
    add: bool = typer.Option(False, "--add", help="Add to the references of identities already enrolled."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
    workers: int = typer.Option(0, "--workers", help="Embed in N worker processes and commit identities in batches, resumably: run again after a crash (0: one process, one transaction)."),
    shard: str = typer.Option("0/1", "--shard", help="With --workers: only the identities of shard i/n (several machines, one database store)."),
    model: Optional[str] = typer.Option(None, "--model", help=_MODEL_OPT),
    inference: str = typer.Option("auto", "--inference", help=_INFERENCE_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Enroll every sub-folder of FOLDER as one identity, in one transaction.

    Identities are named by the sub-folder's path; images are decoded and embedded in batches.
    With --workers N: N processes embed, each identity lands with all its references or not
    at all, and running the command again resumes (identities already enrolled are skipped).
    """
    if workers:
        _enroll_bulk(gallery, folder, workers, shard, replace or add, progress, model, inference, as_json)
        return
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
                "gallery": _shown(gallery),
                "n_enrolled": len(results),
                "n_references": sum(len(r.image_ids) for r in results),
                "n_embeddings": n_embeddings,
                "enrolled": [r.to_dict() for r in results],
            }
        )
    else:
        typer.echo(f"enrolled {len(results)} identities, {sum(len(r.image_ids) for r in results)} references, from {folder}")
    _warn_size(gallery)


def _progress_bar(label: str) -> Any:
    """A rich progress bar on stderr whose ``update(done, total)`` is a ``BulkProgress``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    )


def _enroll_bulk(gallery: str, folder: str, workers: int, shard: str, exists_flag: bool, progress: bool, model: Optional[str], inference: str, as_json: bool) -> None:
    import contextlib

    from twinshot.errors import ConfigError
    from twinshot.gallery.bulk import BulkConfig, enroll_folder_bulk, parse_shard

    if exists_flag:
        raise ConfigError("--workers resumes by skipping identities already enrolled; --replace and --add need one transaction (without --workers)")
    config = BulkConfig(workers=workers, shard=parse_shard(shard))
    with _open(gallery, model, inference=inference) as g, contextlib.ExitStack() as stack:
        report = None
        if progress and sys.stderr.isatty():
            bar = stack.enter_context(_progress_bar("enroll"))
            task = bar.add_task("enroll", total=None)
            report = lambda done, total: bar.update(task, completed=done, total=total)  # noqa: E731
        result = enroll_folder_bulk(g, folder, config, model=model, progress=report)
        n_embeddings = g.n_embeddings
    if as_json:
        _emit_json({"gallery": _shown(gallery), **result.to_dict(), "n_embeddings": n_embeddings})
    else:
        typer.echo(
            f"enrolled {result.enrolled} identities ({result.references} references) from {folder} with {workers} "
            f"worker(s) in {result.seconds:.1f} s; {result.skipped} already enrolled, skipped"
        )
    _warn_size(gallery)


@app.command("identify")
def identify(
    gallery: str = typer.Argument(..., help=_GALLERY),
    images: list[str] = typer.Argument(..., help="Query images."),
    k: int = typer.Option(5, "--k", help="Candidates per query."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Acceptance threshold (a logit); default: the gallery's."),
    rule: Optional[str] = typer.Option(None, "--rule", help="'max' or 'mean'; default: the gallery's."),
    index: str = typer.Option("auto", "--index", help=_INDEX_HELP),
    search_in: str = typer.Option("auto", "--search", help=_SEARCH_HELP),
    model: Optional[str] = typer.Option(None, "--model", help=_MODEL_OPT),
    inference: str = typer.Option("auto", "--inference", help=_INFERENCE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list, one object per query."),
) -> None:
    """Who is in each image? The best identity above the threshold, or unknown."""
    from twinshot.cli.output import decision

    with _open(gallery, model, index, inference, readonly=True, search=search_in) as g:
        results = g.identify(images, k=k, threshold=threshold, rule=rule)
        calibration = g.calibration
    if threshold is None:
        _warn_size(gallery)
    if as_json:
        _emit_json([{"image": img, **r.to_dict()} for img, r in zip(images, results)])
        return
    for img, r in zip(images, results):
        who = r.identity if r.identity is not None else "unknown"
        p_at = float(calibration.probability(r.threshold))
        typer.echo(f"{img}: {who} ({decision(r.score, r.threshold, r.probability, p_at)})")
        for c in r.candidates:
            typer.echo(f"    {c.identity}: score {_fmt(c.score)}, P(same) {c.probability:.3f}")


@app.command("search")
def search(
    gallery: str = typer.Argument(..., help=_GALLERY),
    images: list[str] = typer.Argument(..., help="Query images."),
    k: int = typer.Option(10, "--k", help="Nearest enrolled images per query."),
    index: str = typer.Option("auto", "--index", help=_INDEX_HELP),
    search_in: str = typer.Option("auto", "--search", help=_SEARCH_HELP),
    model: Optional[str] = typer.Option(None, "--model", help=_MODEL_OPT),
    inference: str = typer.Option("auto", "--inference", help=_INFERENCE_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """The K enrolled images most like each query (image retrieval)."""
    with _open(gallery, model, index, inference, readonly=True, search=search_in) as g:
        result = g.search(images, k=k)
    queries = [{"image": img, "neighbours": [n.to_dict() for n in result.neighbours(i)]} for i, img in enumerate(images)]
    if as_json:
        _emit_json({"gallery": _shown(gallery), "k": k, "results": queries})
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
    from twinshot.gallery import Actor, remove_identity

    n = remove_identity(gallery, identity, actor=Actor("cli"))
    if as_json:
        _emit_json({"gallery": _shown(gallery), "identity": identity, "removed": n})
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
        f"({((info.get('identification_calibration') or info['calibration_report']) or {}).get('target', 'not calibrated')})"
    )
    for r in info["identities"]:
        meta = f" {json.dumps(r['metadata'])}" if r["metadata"] else ""
        if r.get("metadata_error"):
            meta = f" (metadata unreadable: {r['metadata_error']})"
        typer.echo(f"  {r['name']}: {r['references']} reference(s){meta}")


@app.command("calibrate")
def calibrate(
    gallery: str = typer.Argument(..., help=_GALLERY),
    pairs: Optional[str] = typer.Option(None, "--pairs", help="A pairs CSV with columns path1,path2,same."),
    folder: Optional[str] = typer.Option(None, "--folder", help="A labelled folder (or zip) of class sub-folders; pairs are drawn from it."),
    far: Optional[float] = typer.Option(None, "--far", help="Target false accept rate of one comparison (verification), e.g. 0.001."),
    fpir: Optional[float] = typer.Option(None, "--fpir", help="Target false positive identification rate (strangers accepted as someone) for identification; needs --folder."),
    gallery_size: Optional[int] = typer.Option(None, "--gallery-size", help="With --fpir: the gallery size M to calibrate for (default: the gallery's current size)."),
    simulations: int = typer.Option(20, "--simulations", help="With --fpir: galleries of size M simulated from --folder."),
    eer: bool = typer.Option(False, "--eer", help="Put the threshold at the equal error rate."),
    method: str = typer.Option("platt", "--method", help="Probability calibration: 'platt', 'isotonic' or 'none'."),
    n_pairs: int = typer.Option(4000, "--n-pairs", help="Pairs drawn from --folder (half genuine, half impostor)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the pair drawing and the bootstrap."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the 95% intervals."),
    model: Optional[str] = typer.Option(None, "--model", help=_MODEL_OPT),
    inference: str = typer.Option("auto", "--inference", help=_INFERENCE_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Fit and store the threshold (--fpir RATE for identification, --far RATE or --eer for
    verification) and calibrated probabilities.

    Use labelled data that is not the gallery: a pairs CSV or a folder of class sub-folders
    (--fpir needs a folder: it simulates galleries of the gallery's size from its classes).
    """
    if fpir is not None:
        _calibrate_fpir(gallery, model, inference, folder, pairs, far, eer, fpir, gallery_size, simulations, seed, as_json)
        return
    with _open(gallery, model, inference=inference) as g:
        report = g.calibrate(
            pairs=pairs, folder=folder, far=far, eer=eer, method=method, n_pairs=n_pairs, seed=seed,
            n_boot=bootstrap, progress=not as_json and sys.stderr.isatty(),
        )
    if as_json:
        _emit_json({"gallery": _shown(gallery), **report.to_dict()})
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


def _calibrate_fpir(
    gallery: str, model: Optional[str], inference: str, folder: Optional[str], pairs: Optional[str], far: Optional[float],
    eer: bool, fpir: float, gallery_size: Optional[int], simulations: int, seed: int, as_json: bool,
) -> None:
    """``calibrate --fpir``: the identification threshold (see :mod:`twinshot.gallery.identification`)."""
    from twinshot.errors import ConfigError
    from twinshot.gallery.identification import calibrate_gallery

    if far is not None or eer:
        raise ConfigError("give only one of --fpir (identification), --far or --eer (verification)")
    if folder is None or pairs is not None:
        raise ConfigError("--fpir needs --folder (labelled class folders to simulate galleries from), not --pairs")
    with _open(gallery, model, inference=inference) as g:
        r = calibrate_gallery(
            g, folder, fpir=fpir, gallery_size=gallery_size, simulations=simulations, seed=seed,
            progress=not as_json and sys.stderr.isatty(),
        )
    if as_json:
        _emit_json({"gallery": _shown(gallery), **r.to_dict()})
        return
    typer.echo(
        f"threshold {r.threshold:.4f} (fpir={r.target_fpir:g} for a gallery of {r.gallery_size} identities, "
        f"{r.references} reference(s) each; {r.method} from {r.n_classes} classes / {r.n_images} images, {r.simulations} simulations)\n"
        f"  FPIR {r.fpir:.4f} [{r.fpir_range[0]:.4f}, {r.fpir_range[1]:.4f}]  DIR {r.dir:.4f} [{r.dir_range[0]:.4f}, {r.dir_range[1]:.4f}]  "
        f"rank-1 {r.rank1:.4f}  (mean [2.5%, 97.5%] over simulated galleries)"
    )


def _warn_size(gallery: str) -> None:
    """Warn on stderr when the gallery outgrew the size its FPIR threshold was fitted for."""
    from twinshot.gallery.identification import gallery_size_warning

    message = gallery_size_warning(gallery)
    if message:
        typer.echo(message, err=True)


@app.command("normalise")
def normalise(
    gallery: str = typer.Argument(..., help=_GALLERY),
    method: str = typer.Option(..., "--method", help="'znorm', 'tnorm', 'snorm', 'asnorm', or 'none' to use raw scores again."),
    cohort: Optional[str] = typer.Option(None, "--cohort", help="Images of people who are not enrolled (a folder or zip), e.g. the calibration data."),
    cohort_size: int = typer.Option(1000, "--cohort-size", help="At most this many cohort images (drawn with --seed)."),
    top_k: int = typer.Option(100, "--top-k", help="For asnorm: the cohort scores kept per side."),
    seed: int = typer.Option(0, "--seed", help="Seed of the cohort drawing."),
    model: Optional[str] = typer.Option(None, "--model", help=_MODEL_OPT),
    inference: str = typer.Option("auto", "--inference", help=_INFERENCE_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Store a cohort score normalisation used by identify and verify (then calibrate --fpir)."""
    from twinshot.gallery.scorenorm import set_score_norm

    with _open(gallery, model, inference=inference) as g:
        info = set_score_norm(g, method, cohort=cohort, cohort_size=cohort_size, top_k=top_k, seed=seed,
                              progress=not as_json and sys.stderr.isatty())
    if as_json:
        _emit_json({"gallery": _shown(gallery), **info})
    elif info["method"] == "none":
        typer.echo(f"{_shown(gallery)}: raw scores (no normalisation); calibrate the threshold again")
    else:
        typer.echo(
            f"{_shown(gallery)}: {info['method']} with a cohort of {info['cohort_size']} images from {info['source']}; "
            f"scores are now in standard deviations: run `twinshot gallery calibrate --fpir` next"
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
    import contextlib

    from twinshot.gallery import Actor
    from twinshot.gallery import reembed as do_reembed

    with contextlib.ExitStack() as stack:
        report = None
        if not as_json and sys.stderr.isatty():  # a large gallery takes minutes: show where it is
            bar = stack.enter_context(_progress_bar("re-embed"))
            task = bar.add_task("re-embed", total=None)
            report = lambda done, total: bar.update(task, completed=done, total=total)  # noqa: E731
        g, summary = do_reembed(gallery, model, inference=inference, progress=report, actor=Actor("cli"))
    g.close()
    if as_json:
        _emit_json(summary)
    else:
        again = "normalise (gallery normalise --cohort DIR) and calibrate again" if summary.get("score_norm") == "reset" else "calibrate again"
        typer.echo(f"re-embedded {summary['n_embeddings']} references with {summary['model']}; threshold reset to 0, {again}")


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
        _emit_json({"gallery": _shown(gallery), **info})
    else:
        typer.echo(f"built {info['kind']} index over {info['rows']} references")


@app.command("migrate")
def migrate(
    source: str = typer.Argument(..., help="The gallery to copy (a file or a store URI)."),
    destination: str = typer.Argument(..., help="Where to copy it (a new file or store URI; or an interrupted migration to resume)."),
    chunk: int = typer.Option(500, "--chunk", help="Identities per write of the destination."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Copy a gallery between stores (e.g. SQLite to PostgreSQL), resumably: run the same
    command again after an interruption and it copies only what is missing."""
    from twinshot.gallery import Actor
    from twinshot.gallery.migrate import migrate as do_migrate

    summary = do_migrate(source, destination, chunk=chunk, actor=Actor("cli"))
    if as_json:
        _emit_json(summary)
    else:
        resumed = f" ({summary['skipped_identities']} already there)" if summary["skipped_identities"] else ""
        typer.echo(
            f"migrated {summary['source']} to {summary['destination']}: {summary['identities']} identities, "
            f"{summary['embeddings']} embeddings; copied {summary['copied_identities']} now{resumed}"
        )


@app.command("check")
def check(
    gallery: str = typer.Argument(..., help=_GALLERY),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Check GALLERY's integrity, read-only: SQLite's own check, the settings, every stored
    vector, and that identities, embeddings and kept images agree. Exit status 1 when a
    problem is found."""
    from twinshot.gallery import check_gallery

    report = check_gallery(gallery)
    if as_json:
        _emit_json(report.to_dict())
    else:
        state = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        typer.echo(
            f"{_shown(gallery)}: {state}; {report.identities} identities, {report.embeddings} embeddings, "
            f"{report.images} kept images, {report.audit_records} audit records"
        )
        for line in report.problems:
            typer.echo(f"  problem: {line}")
        for line in report.warnings:
            typer.echo(f"  warning: {line}")
    if not report.ok:
        raise typer.Exit(1)


@app.command("verify")
def verify_claim(
    gallery: str = typer.Argument(..., help=_GALLERY),
    identity: str = typer.Argument(..., help="The claimed identity (enrolled)."),
    image: str = typer.Argument(..., help="The questioned image."),
    search_in: str = typer.Option("auto", "--search", help=_SEARCH_HELP),
    model: Optional[str] = typer.Option(None, "--model", help=_MODEL_OPT),
    inference: str = typer.Option("auto", "--inference", help=_INFERENCE_HELP),
    scoring: str = typer.Option("distance", "--scoring", help="'distance': the gallery's rule and threshold; 'svm': the identity's own SVM on its kept reference images (needs --keep-images), accepted at decision value >= --threshold (default 0); 'fused': the SVM plus the pair model and weight stored with the gallery's model (signatures-cedar), default threshold stored with them."),
    cohort: Optional[str] = typer.Option(None, "--cohort", help="With --scoring svm or fused: a folder of other people's genuine images, the SVM's negatives (default: the other identities' references)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Accept at this score instead of the default (the gallery's threshold; 0 for svm)."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Is IMAGE of the claimed IDENTITY? Compared with all of IDENTITY's references under the
    gallery's rule, accepted when the score reaches the gallery's threshold; or scored by
    IDENTITY's own SVM (--scoring svm)."""
    from twinshot.writer_dependent.gallery_claims import verify_claim_scored

    with _open(gallery, model, inference=inference, readonly=True, search=search_in) as g:
        result = verify_claim_scored(g, identity, image, scoring, threshold=threshold, cohort=cohort)
    if as_json:
        _emit_json({"image": image, **result.to_dict()})
        return
    verdict = "accepted" if result.same else "rejected"
    if scoring in ("svm", "fused"):
        typer.echo(
            f"{image}: {verdict} as {identity} ({scoring} score {_fmt(result.score)} vs threshold {_fmt(result.threshold)}, "
            f"{result.references} reference{'s' * (result.references != 1)} vs a cohort of {result.cohort})"
        )
        return
    typer.echo(
        f"{image}: {verdict} as {identity} (score {_fmt(result.score)} vs threshold {_fmt(result.threshold)}, "
        f"{result.rule} over {result.references} reference{'s' * (result.references != 1)}, p {result.probability:.3f})"
    )
