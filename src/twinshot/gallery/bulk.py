"""Bulk enrollment and embedding of a large labelled folder in parallel worker processes.

``N`` worker processes (a :class:`concurrent.futures.ProcessPoolExecutor`, ``spawn``
start) each load the gallery's model once, then decode and embed *tasks* of a few
identities; the parent process is the only writer. It commits each task's identities in
one transaction through the :class:`~twinshot.gallery.Gallery` API (so it works on any
store), in folder order, and reports them done only after the commit returns.

Resumable by construction: the gallery itself is the journal. An identity's references
land together or not at all (one transaction), so after a crash (the parent or a worker
killed) every identity is either enrolled with all its references or absent. Running the
same command again skips identities already enrolled with as many references as the folder
holds for them, and refuses (before any work) an identity enrolled with another count.

Why a process pool and not torchrun or Ray: embedding is embarrassingly parallel and the
store wants one writer (SQLite allows one at a time; a single writer also keeps the commit
order and the resume rule in one place). A pool needs no launcher, no rendezvous and no new
dependency, and a killed worker surfaces as an error in the parent instead of a hung
collective. ``spawn``, not ``fork``: forking a process whose torch/OpenMP thread pools
have started can deadlock the child; each worker pays a second or two of start-up, small
against a large folder. Several machines can share one large folder with ``shard`` (each
runs ``--shard i/n`` against the same database store).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
import zlib
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from twinshot.errors import ConfigError, DataError, TwinshotError

#: ``progress(done, total)``: identities (enrollment) or images (embedding) done so far.
BulkProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class BulkConfig:
    """How a bulk job is spread over worker processes.

    Attributes:
        workers: worker processes (each embeds with ``threads`` torch threads); ``0``:
            embed in the calling process (still committed in batches, resumable).
        threads: torch threads per worker.
        task_images: images per task, at most (a task holds whole identities, so one
            identity with more images is a task of its own).
        batch_size: images per forward pass inside a worker.
        shard: ``(i, n)``: only the identities whose name hashes to ``i`` modulo ``n``
            (several machines sharing one folder); ``(0, 1)``: all.
    """

    workers: int = 2
    threads: int = 1
    task_images: int = 256
    batch_size: int = 256
    shard: tuple[int, int] = (0, 1)

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"workers must be 0 or more, got {self.workers}")
        if self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        if self.task_images < 1 or self.batch_size < 1:
            raise ConfigError("task_images and batch_size must be at least 1")
        i, n = self.shard
        if n < 1 or not 0 <= i < n:
            raise ConfigError(f"shard must be i/n with 0 <= i < n, got {i}/{n}")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)``; a clear error otherwise."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    BulkConfig(shard=(i, n))
    return i, n


@dataclass(frozen=True)
class BulkReport:
    """What a bulk enrollment did.

    Attributes:
        enrolled: identities enrolled by this run.
        skipped: identities found already enrolled with the same number of references.
        references: references (embeddings) written by this run.
        identities: identities of the folder (this shard's).
        seconds: wall time of the whole run.
        workers: worker processes used.
    """

    enrolled: int
    skipped: int
    references: int
    identities: int
    seconds: float
    workers: int
    names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_enrolled": self.enrolled,
            "n_skipped": self.skipped,
            "n_references": self.references,
            "n_identities": self.identities,
            "seconds": round(self.seconds, 3),
            "workers": self.workers,
            "references_per_second": round(self.references / self.seconds, 1) if self.seconds > 0 else None,
        }


# -- worker side -----------------------------------------------------------------------

_worker: dict[str, Any] = {}


def _init_worker(model: Any, inference: str, fingerprint: str, threads: int) -> None:
    """Runs once in each worker: remember how to load the model (loaded on the first task,
    so that a failure reaches the parent as an exception naming its cause)."""
    import torch

    torch.set_num_threads(threads)
    _worker.update(model=model, inference=inference, fingerprint=fingerprint, embedder=None)


def _embedder() -> Any:
    if _worker.get("embedder") is None:
        from twinshot.gallery.embedding import as_embedder
        from twinshot.gallery.files import resolve_model

        model = _worker["model"]
        if isinstance(model, (str, os.PathLike)):
            model, _ = resolve_model(model, inference=_worker["inference"])
        embedder = as_embedder(model)
        if _worker["fingerprint"] and embedder.fingerprint != _worker["fingerprint"]:
            raise TwinshotError(
                f"worker loaded a model with fingerprint {embedder.fingerprint[:12]}, the gallery's is "
                f"{_worker['fingerprint'][:12]}"
            )
        _worker["embedder"] = embedder
    return _worker["embedder"]


def _embed_task(listing: Any, keep_images: bool, batch_size: int, embedder: Any = None) -> tuple[np.ndarray, list[bytes] | None]:
    """Decode and embed every image of a (sub-)listing: float32 ``(n, D)`` and, when asked,
    the images' original bytes. In a worker, with the worker's model; else with ``embedder``."""
    from twinshot.data.sources import decode_listing
    from twinshot.gallery.embedding import embed_uint8, read_listing_bytes

    embedder = embedder if embedder is not None else _embedder()
    images = decode_listing(listing, embedder.preprocessing, workers=1)
    vectors = embed_uint8(embedder, images, batch_size=batch_size)
    return vectors, (read_listing_bytes(listing) if keep_images else None)


# -- parent side -----------------------------------------------------------------------


def _sub_listing(listing: Any, classes: Sequence[int], rows: Sequence[np.ndarray]) -> Any:
    """The part of ``listing`` holding ``classes`` (their image rows ``rows``), relabelled."""
    from twinshot.data.sources import ImageListing

    members: list[str] = []
    labels: list[int] = []
    for j, r in enumerate(rows):
        members.extend(listing.members[i] for i in r)
        labels.extend([j] * len(r))
    return ImageListing(
        source=listing.source,
        is_zip=listing.is_zip,
        members=members,
        labels=labels,
        class_names=[listing.class_names[c] for c in classes],
        class_groups=[0] * len(classes),
        group_names=[""],
    )


def _pool(config: BulkConfig, model: Any, inference: str, fingerprint: str) -> Any:
    """The worker pool (``workers == 0``: none, a no-op context)."""
    if config.workers == 0:
        return contextlib.nullcontext(None)
    return ProcessPoolExecutor(
        config.workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(model, inference, fingerprint, config.threads),
    )


def _in_order(pool: ProcessPoolExecutor | None, calls: Iterable[tuple[Any, ...]], window: int, embedder: Any) -> Iterator[Any]:
    """Results of ``_embed_task(*call)`` in the order of ``calls``, at most ``window`` in
    flight (no pool: one after the other in this process, with ``embedder``)."""
    if pool is None:
        for call in calls:
            yield _embed_task(*call, embedder)
        return
    it = iter(calls)
    pending: deque[Future] = deque()
    for call in it:
        pending.append(pool.submit(_embed_task, *call))
        if len(pending) >= window:
            break
    try:
        while pending:
            result = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_embed_task, *nxt))
            yield result
    finally:
        for f in pending:
            f.cancel()


def _tasks(counts: Sequence[int], todo: Sequence[int], task_images: int) -> list[list[int]]:
    """Group the classes ``todo`` (in order) into tasks of at most ``task_images`` images
    (whole classes; a larger class is a task of its own)."""
    tasks: list[list[int]] = []
    size = 0
    for c in todo:
        if tasks and size + counts[c] <= task_images:
            tasks[-1].append(c)
            size += counts[c]
        else:
            tasks.append([c])
            size = counts[c]
    return tasks


def _worker_model(gallery: Any, model: Any) -> tuple[Any, str]:
    """What each worker loads (a reference, or a picklable torch model) and with which
    inference backend."""
    from twinshot.gallery.embedding import TorchEmbedder

    inference = "torch" if gallery.backend == "torch" else "onnx"
    if model is None:
        model = gallery.model_ref or None
    if model is None:
        if not isinstance(gallery.embedder, TorchEmbedder):
            raise TwinshotError(f"{gallery.path}: the gallery's model has no saved reference; pass the model (--model)")
        model = gallery.embedder.model
    return model, inference


@contextlib.contextmanager
def _worker_death(what: Callable[[], str]) -> Iterator[None]:
    """Turn a worker process that died (killed, out of memory) into a one-line error."""
    try:
        yield
    except BrokenProcessPool:
        raise TwinshotError(f"a worker process died (killed or out of memory); {what()}") from None


def _shard_of(name: str, n: int) -> int:
    return zlib.crc32(name.encode("utf-8")) % n


def enroll_folder_bulk(
    gallery: Any,
    folder: str | os.PathLike,
    config: BulkConfig | None = None,
    *,
    model: Any = None,
    progress: BulkProgress | None = None,
    actor: Any = None,
) -> BulkReport:
    """Enroll every class folder of ``folder`` (or a .zip) as one identity, embedding in
    ``config.workers`` processes and committing each task's identities in one transaction
    through ``gallery``. Resumable: identities already enrolled with as many references as
    the folder holds for them are skipped (see the module docstring).

    Args:
        gallery: an open, writable :class:`~twinshot.gallery.Gallery`.
        model: what the workers load (a reference such as a checkpoint path or shipped
            name, or a torch model); default: the gallery's stored model reference.
        progress: ``progress(done, total)`` identities, called after each commit (and once
            at the start, counting the skipped ones as done).

    Raises:
        DataError: an identity of the folder is enrolled with another number of references
            (nothing is written), or an image cannot be read (identities committed before
            stay; run again to resume).
    """
    from twinshot.data.sources import list_images
    from twinshot.gallery.names import normalize_identity

    config = config or BulkConfig()
    start = time.perf_counter()
    if gallery.read_only:
        raise TwinshotError(f"{gallery.path}: the gallery is read-only ({gallery.read_only})")
    listing = list_images(folder)
    labels = np.asarray(listing.labels)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(len(listing.class_names) + 1))
    rows = [order[bounds[c] : bounds[c + 1]] for c in range(len(listing.class_names))]
    counts = [int(r.size) for r in rows]
    names = [normalize_identity(n) for n in listing.class_names]
    i, n = config.shard
    mine = [c for c in range(len(names)) if _shard_of(names[c], n) == i]
    existing = {r.name: r.references for r in gallery.identities()}
    todo: list[int] = []
    skipped = 0
    for c in mine:
        have = existing.get(names[c])
        if have is None:
            todo.append(c)
        elif have == counts[c]:
            skipped += 1
        else:
            raise DataError(
                f"identity {names[c]!r} is already enrolled with {have} reference(s) but {folder} has "
                f"{counts[c]} image(s) for it; remove it first (twinshot gallery remove), or enroll the "
                f"folder in one transaction with --replace (without --workers)"
            )
    total = len(mine)
    done = skipped
    enrolled: list[str] = []
    references = 0
    if progress is not None:
        progress(done, total)
    if todo:
        worker_model, inference = _worker_model(gallery, model)
        tasks = _tasks(counts, todo, config.task_images)
        calls = ((_sub_listing(listing, t, [rows[c] for c in t]), gallery.keep_images, config.batch_size) for t in tasks)
        with _pool(config, worker_model, inference, gallery.fingerprint) as pool, _worker_death(
            lambda: f"{len(enrolled)} identities of this run were committed; run the same command again to resume"
        ):
            for task, (vectors, kept) in zip(tasks, _in_order(pool, calls, 2 * config.workers, gallery.embedder)):
                entries = []
                offset = 0
                for c in task:
                    k = counts[c]
                    entries.append((names[c], vectors[offset : offset + k], None, kept[offset : offset + k] if kept is not None else None))
                    offset += k
                gallery.enroll_many(entries, actor=actor)
                enrolled.extend(names[c] for c in task)
                references += offset
                done += len(task)
                if progress is not None:
                    progress(done, total)
    return BulkReport(
        enrolled=len(enrolled), skipped=skipped, references=references, identities=total,
        seconds=time.perf_counter() - start, workers=config.workers, names=enrolled,
    )


def embed_folder(
    model: Any,
    folder: str | os.PathLike,
    out: str | os.PathLike,
    config: BulkConfig | None = None,
    *,
    inference: str = "torch",
    progress: BulkProgress | None = None,
) -> dict[str, Any]:
    """Embed every image of a labelled ``folder`` (or .zip) in ``config.workers`` processes
    and write them to ``out``: a ``.npz`` with ``embeddings`` float32 ``(N, D)``, ``labels``
    int64 ``(N,)``, ``class_names`` ``(M,)``, ``paths`` ``(N,)`` (relative to the folder)
    and the model's ``fingerprint``; or a ``.npy`` of the embeddings alone (rows in the
    order of the folder listing: class folders sorted, then files sorted). Written to a
    temporary file and renamed, so ``out`` is never half-written.

    Args:
        model: a shipped model's name, a checkpoint / run directory or a ``.onnx`` file.
        progress: ``progress(done, total)`` images.
    """
    from twinshot.data.sources import list_images
    from twinshot.gallery.embedding import as_embedder
    from twinshot.gallery.files import resolve_model

    config = config or BulkConfig()
    out = Path(out)
    if out.suffix not in (".npz", ".npy"):
        raise ConfigError(f"{out}: the output must be a .npz or .npy file")
    if not out.parent.is_dir():
        raise DataError(f"{out.parent}: no such folder")
    start = time.perf_counter()
    loaded, ref = resolve_model(model, inference=inference)
    embedder = as_embedder(loaded)
    listing = list_images(folder)
    n = len(listing.members)
    step = config.task_images
    chunks = [np.arange(a, min(n, a + step)) for a in range(0, n, step)]
    worker_model = ref or loaded
    if not isinstance(worker_model, (str, os.PathLike)) and inference != "torch":
        raise ConfigError("a model held only in memory can only be embedded with inference='torch'")
    vectors = np.empty((n, embedder.embedding_dim), np.float32)
    done = 0
    if progress is not None:
        progress(0, n)
    with _pool(config, worker_model, inference, embedder.fingerprint) as pool, _worker_death(lambda: "nothing was written"):
        calls = ((_sub_listing(listing, [0], [r]), False, config.batch_size) for r in chunks)
        for r, (v, _) in zip(chunks, _in_order(pool, calls, 2 * config.workers, embedder)):
            vectors[r] = v
            done += r.size
            if progress is not None:
                progress(done, n)
    tmp = str(out.parent / f".{out.name}.{os.getpid()}.tmp{out.suffix}")
    try:
        with open(tmp, "wb") as f:
            if out.suffix == ".npy":
                np.save(f, vectors)
            else:
                np.savez(
                    f, embeddings=vectors, labels=np.asarray(listing.labels, np.int64),
                    class_names=np.asarray(listing.class_names), paths=np.asarray(listing.members),
                    fingerprint=np.asarray(embedder.fingerprint),
                )
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - start
    return {
        "output": str(out), "n_images": n, "dim": int(embedder.embedding_dim), "n_classes": len(listing.class_names),
        "fingerprint": embedder.fingerprint, "workers": config.workers, "seconds": round(seconds, 3),
        "images_per_second": round(n / seconds, 1) if seconds > 0 else None,
    }
