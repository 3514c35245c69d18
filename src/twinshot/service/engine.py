"""The engine behind the routes: one open :class:`~twinshot.gallery.Gallery` and the
threads that use it, so that no decoding, inference or SQLite work runs on the event loop.

* **decoding**: a pool of ``decode_workers`` threads reads each upload's header (pixel
  limit, before decoding) and decodes it with :func:`twinshot.data.images.load_image`;
* **identify**: one inference thread (:class:`IdentifyBatcher`) takes every query waiting
  for it (up to ``max_batch``), embeds them as one batch and identifies them with one call
  of :meth:`Gallery.identify_embeddings`, then answers each request. With no queue it adds
  no wait; under load it turns many small requests into few large matrix products;
* **search, verify, list**: a small reader pool;
* **enroll, delete**: one writer thread, so writes happen one at a time in arrival order
  (each one SQLite transaction, see :mod:`twinshot.gallery.store`). After a deletion the
  file is rewritten (``VACUUM``) and its write-ahead log truncated, so the deleted
  embeddings' bytes are gone from the disk file, not only from the tables.

The gallery object serialises its own methods with a lock, and it keeps its in-memory
matrix in step with every write, so identify, enroll and delete may interleave freely.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, TypeVar
from pathlib import Path

import torch

from twinshot.data.images import load_image
from twinshot.errors import DamagedError, DataError, ReadOnlyError, StorageError, TwinshotError
from twinshot.faces.align import NoFaceError
from twinshot.gallery import Actor, Gallery, describe
from twinshot.gallery.names import normalize_identity
from twinshot.gallery.embedding import embed_uint8
from twinshot.gallery.results import Identification, finite
from twinshot.preprocessing import UnusableImageError
from twinshot.service.config import Limits, ServiceConfig
from twinshot.service.errors import ServiceError, scrub
from twinshot.service.limits import image_size

T = TypeVar("T")

#: How an enrollment treats an identity that is already enrolled (the CLI's flags).
ENROLL_MODES = ("new", "add", "replace")


@dataclass(frozen=True)
class Upload:
    """One uploaded image: the name it came with (for messages and answers) and its bytes."""

    name: str
    data: bytes


def unknown(threshold: float) -> dict[str, Any]:
    """The answer for a query when nobody is enrolled."""
    return {"identity": None, "score": None, "probability": 0.0, "threshold": threshold, "candidates": []}


def limit_threads(n: int | None) -> None:
    """Give the calling thread at most ``n`` torch intra-op threads. torch's (OpenMP's)
    thread count is kept per calling thread, so every worker thread sets its own; without
    it, a worker's first torch operation starts a pool of one thread per core whose
    busy-waiting starves the other threads of a small machine."""
    if n is not None:
        torch.set_num_threads(n)


# -- batching identify --------------------------------------------------------------------


@dataclass
class _Job:
    images: torch.Tensor  # uint8 (n, C, H, W)
    k: int
    loop: asyncio.AbstractEventLoop
    future: "asyncio.Future[list[dict[str, Any]]]"


def _resolve(future: "asyncio.Future[Any]", result: Any = None, error: BaseException | None = None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class IdentifyBatcher:
    """One inference thread that answers identify requests in batches.

    Args:
        gallery: the gallery (its model embeds, its ``identify_embeddings`` decides).
        max_batch: most queries per batch.
    """

    def __init__(self, gallery: Gallery, max_batch: int = 64, threads: int | None = None) -> None:
        self.gallery = gallery
        self.max_batch = max_batch
        self.threads = threads
        self.batches = 0
        self.queries = 0
        self.largest = 0
        self._queue: "queue.SimpleQueue[_Job | None]" = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="twinshot-identify", daemon=True)
        self._thread.start()

    async def identify(self, images: torch.Tensor, k: int) -> list[dict[str, Any]]:
        """Identify uint8 images ``(n, C, H, W)``; one answer (a dict in the CLI's JSON
        shape, without ``image``) per image."""
        loop = asyncio.get_running_loop()
        job = _Job(images, k, loop, loop.create_future())
        self._queue.put(job)
        return await job.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        limit_threads(self.threads)
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs, n, stop = [job], job.images.shape[0], False
            while n < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
                n += more.images.shape[0]
            self._answer(jobs)
            if stop:
                return

    def _answer(self, jobs: list[_Job]) -> None:
        try:
            results = self._identify(torch.cat([j.images for j in jobs]), max(j.k for j in jobs))
        except BaseException as exc:  # answered to every waiting request, never lost
            for j in jobs:
                j.loop.call_soon_threadsafe(_resolve, j.future, None, exc)
            return
        self.batches += 1
        self.queries += len(results)
        self.largest = max(self.largest, len(results))
        at = 0
        for j in jobs:
            n = j.images.shape[0]
            mine = [dict(r, candidates=r["candidates"][: j.k]) for r in results[at : at + n]]
            at += n
            j.loop.call_soon_threadsafe(_resolve, j.future, mine)

    def _identify(self, images: torch.Tensor, k: int) -> list[dict[str, Any]]:
        g = self.gallery
        embeddings = embed_uint8(g.model, images, batch_size=self.max_batch)
        if g.n_embeddings == 0:
            return [unknown(g.threshold) for _ in range(len(embeddings))]
        try:
            found: list[Identification] = g.identify_embeddings(embeddings, k)
        except TwinshotError:
            if g.n_embeddings == 0:  # emptied by a deletion meanwhile
                return [unknown(g.threshold) for _ in range(len(embeddings))]
            raise
        return [r.to_dict() for r in found]


# -- the engine ---------------------------------------------------------------------------


class Engine:
    """The gallery and its threads (see the module's docstring).

    Args:
        gallery: an open gallery (the engine closes it).
        config: the service's settings.
    """

    def __init__(self, gallery: Gallery, config: ServiceConfig) -> None:
        self.gallery = gallery
        self.config = config
        self.limits: Limits = config.limits
        threads = (config.torch_threads,)
        self._decode = ThreadPoolExecutor(config.decode_workers, "twinshot-decode", limit_threads, threads)
        self._read = ThreadPoolExecutor(2, "twinshot-read", limit_threads, threads)
        self._write = ThreadPoolExecutor(1, "twinshot-write", limit_threads, threads)
        self.batcher = IdentifyBatcher(gallery, config.max_batch, config.torch_threads)
        where = gallery.path.resolve() if isinstance(gallery.path, Path) else gallery.path  # a file, or a store's URI
        self._known = (str(gallery.path), str(where), gallery.model_ref)

    @classmethod
    def open(cls, config: ServiceConfig) -> Engine:
        """Open the configured gallery (with its own model, or ``config.model``)."""
        gallery = Gallery.open(
            config.gallery, config.model, index=config.index, inference=config.inference, readonly=config.readonly,
            actor=Actor("service"), search=config.search,
        )
        return cls(gallery, config)

    def close(self) -> None:
        self.batcher.close()
        for pool in (self._decode, self._read, self._write):
            pool.shutdown(wait=True)
        self.gallery.close()

    # -- helpers ------------------------------------------------------------------------

    async def _in(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    def scrubbed(self, exc: Exception) -> str:
        return scrub(str(exc), *self._known)

    def check_k(self, k: int) -> int:
        if not 1 <= k <= self.limits.max_k:
            raise ServiceError(422, "invalid_k", f"k must be between 1 and {self.limits.max_k}, got {k}", limit="max_k", max_value=self.limits.max_k)
        return k

    def check_identity(self, identity: str) -> str:
        """The identity's name under the library's rule (:mod:`twinshot.gallery.names`:
        NFC, no control characters, at most ``max_identity_chars``), or a 422."""
        try:
            return normalize_identity(identity, max_chars=self.limits.max_identity_chars)
        except DataError as exc:
            too_long = "limit is" in str(exc)
            raise ServiceError(
                422, "invalid_identity", scrub(str(exc)),
                **({"limit": "max_identity_chars", "max_value": self.limits.max_identity_chars} if too_long else {}),
            ) from None

    def storage_refusal(self, exc: TwinshotError) -> ServiceError | None:
        """The 503 for a gallery that cannot be written here (read-only, locked, full disk,
        damaged), with the reason; None for other errors."""
        if isinstance(exc, ReadOnlyError):
            return ServiceError(503, "read_only_gallery", f"the gallery cannot be changed: {self.read_only_reason or 'it is read-only here'}")
        if isinstance(exc, StorageError):
            return ServiceError(503, "storage_unavailable", self.scrubbed(exc))
        if isinstance(exc, DamagedError):
            return ServiceError(503, "damaged_gallery", self.scrubbed(exc))
        return None

    @property
    def read_only_reason(self) -> str | None:
        """Why the served gallery cannot be changed (said at start-up), or None."""
        return self.gallery.read_only

    def check_count(self, n_images: int) -> None:
        """Refuse (413) a request carrying more than ``max_images`` images."""
        most = self.limits.max_images
        if n_images > most:
            raise ServiceError(
                413, "too_many_images", f"{n_images} images in one request; the limit is {most}", limit="max_images", max_value=most
            )

    def _decode_one(self, upload: Upload) -> torch.Tensor:
        image_size(upload.data, upload.name, self.limits.max_pixels)
        try:
            return load_image(upload.data, self.gallery.model.preprocessing, max_pixels=self.limits.max_pixels)
        except NoFaceError:
            raise ServiceError(422, "no_face", f"image {upload.name!r}: no face found") from None
        except UnusableImageError as exc:  # blank, too elongated: decoded, but not a picture to compare
            raise ServiceError(422, exc.reason, f"image {upload.name!r}: {str(exc).split(': ', 1)[-1]}") from None
        except DataError:
            raise ServiceError(422, "unreadable_image", f"image {upload.name!r} cannot be decoded (truncated or corrupt)") from None

    async def decode(self, uploads: list[Upload]) -> torch.Tensor:
        """Check and decode uploads into uint8 ``(N, C, H, W)`` at the model's size, in the
        decode pool; the first bad one is refused with a 413 or 422 naming it."""
        self.check_count(len(uploads))
        if not uploads:
            raise ServiceError(422, "missing_field", "no image given")
        images = await asyncio.gather(*(self._in(self._decode, self._decode_one, u) for u in uploads))
        return torch.stack(list(images))

    # -- reading ------------------------------------------------------------------------

    async def identify(self, upload: Upload, k: int = 5) -> dict[str, Any]:
        """Who is in the image? The CLI's identify JSON for one query."""
        self.check_k(k)
        images = await self.decode([upload])
        (result,) = await self.batcher.identify(images, k)
        return {"image": upload.name, **result}

    async def search(self, uploads: list[Upload], k: int = 10) -> dict[str, Any]:
        """The ``k`` nearest enrolled images of each upload (the CLI's search JSON)."""
        self.check_k(k)
        images = await self.decode(uploads)

        def run() -> list[list[dict[str, Any]]]:
            g = self.gallery
            embeddings = embed_uint8(g.model, images)
            if g.n_embeddings == 0:
                return [[] for _ in uploads]
            try:
                found = g.search_embeddings(embeddings, k)
            except TwinshotError:
                if g.n_embeddings == 0:
                    return [[] for _ in uploads]
                raise
            return [[n.to_dict() for n in found.neighbours(i)] for i in range(len(uploads))]

        neighbours = await self._in(self._read, run)
        return {"k": k, "results": [{"image": u.name, "neighbours": n} for u, n in zip(uploads, neighbours)]}

    async def verify_pair(self, first: Upload, second: Upload) -> dict[str, Any]:
        """Do two images show the same identity? (The CLI's verify JSON.)"""
        await self.decode([first, second])  # limits and readable, before the library decodes
        result = await self._in(self._read, self.gallery.verify, first.data, second.data)
        return {"image1": first.name, "image2": second.name, **result.to_dict()}

    async def verify_identity(self, upload: Upload, identity: str, scoring: str = "distance") -> dict[str, Any]:
        """Does the image show ``identity``? Its score under the gallery's rule over that
        identity's references, the calibrated probability and the decision; or, with
        ``scoring="svm"``, the identity's own SVM (:mod:`twinshot.writer_dependent.gallery_claims`);
        ``"fused"``: that SVM plus the model's stored pair model."""
        self.check_identity(identity)
        if scoring not in ("distance", "svm", "fused"):
            raise ServiceError(422, "invalid_scoring", f"scoring must be 'distance', 'svm' or 'fused', got {scoring!r}")
        images = await self.decode([upload])
        if scoring in ("svm", "fused"):
            return {"image": upload.name, "identity": identity, **await self._in(self._read, self._verify_svm, upload, identity, scoring)}

        def run() -> dict[str, Any]:
            from twinshot.gallery.claims import UnknownIdentity, verify_claim_embeddings

            g = self.gallery
            embeddings = embed_uint8(g.model, images)
            try:
                (claim,) = verify_claim_embeddings(g, identity, embeddings)
            except UnknownIdentity:
                raise ServiceError(404, "unknown_identity", f"identity {identity!r} is not enrolled") from None
            d = claim.to_dict()
            return {k: d[k] for k in ("probability", "score", "same", "threshold", "rule", "references")}

        return {"image": upload.name, "identity": identity, **await self._in(self._read, run)}

    def _verify_svm(self, upload: Upload, identity: str, scoring: str = "svm") -> dict[str, Any]:
        from twinshot.gallery.claims import UnknownIdentity
        from twinshot.writer_dependent.gallery_claims import verify_claim_scored

        try:
            claim = verify_claim_scored(self.gallery, identity, upload.data, scoring)
        except UnknownIdentity:
            raise ServiceError(404, "unknown_identity", f"identity {identity!r} is not enrolled") from None
        except TwinshotError as exc:  # no kept images, too small a cohort: the gallery's setup
            raise ServiceError(409, "svm_unavailable", self.scrubbed(exc)) from None
        d = claim.to_dict()
        return {k: d[k] for k in ("probability", "score", "same", "threshold", "rule", "references", "cohort", "layer", "scoring")}

    async def identities(self, offset: int = 0, limit: int = 1000) -> dict[str, Any]:
        """The enrolled identities (the CLI's list JSON, without file paths), a page of them."""

        def run() -> dict[str, Any]:
            info = describe(self.gallery.location)
            return {
                "n_identities": info["n_identities"],
                "n_embeddings": info["n_embeddings"],
                "threshold": info["threshold"],
                "rule": info["rule"],
                "offset": offset,
                "limit": limit,
                "identities": info["identities"][offset : offset + limit],
            }

        return await self._in(self._read, run)

    def info(self) -> dict[str, Any]:
        """The gallery's settings, without paths (for ``GET /v1/info``)."""
        g = self.gallery
        ref = g.model_ref
        from types import SimpleNamespace

        from twinshot.gallery.identification import calibration_target
        from twinshot.gallery.scorenorm import stored_norm
        from twinshot.models.io import shipped_models

        return {
            "model": ref if ref in shipped_models() else None,
            "fingerprint": g.fingerprint[:12],
            "dim": g.dim,
            "n_identities": len(g),
            "n_embeddings": g.n_embeddings,
            "rule": g.rule,
            "threshold": g.threshold,
            "calibrated": calibration_target(g),  # "fpir=0.1 at M=60", "far=0.001", ... or None
            "score_norm": (stored_norm(g._meta) or SimpleNamespace(method="none")).method,
            "keep_images": g.keep_images,
            "batching": {"batches": self.batcher.batches, "queries": self.batcher.queries, "largest": self.batcher.largest},
        }

    # -- writing ------------------------------------------------------------------------

    def _exists(self, identity: str) -> bool:
        return any(r.name == identity for r in self.gallery.identities())

    def audit_since(self, seen: set[int]) -> list[dict[str, Any]]:
        """The gallery's audit records (written with each change, in its transaction)
        whose ids are not in ``seen``: changes that took effect but never reached the
        service's audit log (a crash between the two, or a change made by the CLI)."""
        return [r for r in self.gallery.audit() if r["change_id"] not in seen]

    def _refuse_if_read_only(self) -> None:
        if self.read_only_reason is not None:
            raise ServiceError(503, "read_only_gallery", f"the gallery cannot be changed: {self.read_only_reason}")

    async def enroll(
        self, identity: str, uploads: list[Upload], metadata: dict[str, Any] | None, mode: str = "new", actor: Actor | None = None
    ) -> tuple[dict[str, Any], int | None]:
        """Enroll ``identity`` with the uploads: the CLI's enroll JSON (without the path)
        and the id of the change's audit record in the gallery. ``mode``: ``"new"``
        refuses an enrolled name (409), ``"add"`` adds references, ``"replace"`` replaces
        them. A gallery that cannot be written answers 503 with the reason."""
        identity = self.check_identity(identity)
        if mode not in ENROLL_MODES:
            raise ServiceError(422, "invalid_mode", f"mode must be one of {', '.join(ENROLL_MODES)}, got {mode!r}")
        self._refuse_if_read_only()
        await self.decode(uploads)

        def run() -> tuple[dict[str, Any], int | None]:
            try:
                result = self.gallery.enroll(
                    identity, [u.data for u in uploads], metadata, replace=mode == "replace", add=mode == "add", actor=actor
                )
            except TwinshotError as exc:
                refusal = self.storage_refusal(exc)
                if refusal is not None:
                    raise refusal from None
                if isinstance(exc, DataError):
                    raise ServiceError(422, "invalid_input", self.scrubbed(exc)) from None
                if mode == "new" and self._exists(identity):
                    raise ServiceError(
                        409, "already_enrolled", f"identity {identity!r} is already enrolled; enroll with mode=add or mode=replace"
                    ) from None
                raise ServiceError(422, "invalid_input", self.scrubbed(exc)) from None
            return result.to_dict(), self.gallery.last_change_id

        return await self._in(self._write, run)

    async def remove(self, identity: str, actor: Actor | None = None) -> tuple[dict[str, Any], int | None]:
        """Remove ``identity`` and its references (404 if not enrolled); then, unless
        configured off, scrub the file so no byte of them is left (see :meth:`scrub_file`).
        Returns the answer and the id of the change's audit record."""
        identity = self.check_identity(identity)
        self._refuse_if_read_only()

        def run() -> tuple[dict[str, Any], int | None]:
            try:
                removed = self.gallery.remove(identity, actor=actor)
            except TwinshotError as exc:
                refusal = self.storage_refusal(exc)
                if refusal is not None:
                    raise refusal from None
                if not self._exists(identity):
                    raise ServiceError(404, "unknown_identity", f"identity {identity!r} is not enrolled") from None
                raise
            change = self.gallery.last_change_id
            if self.config.scrub_on_delete:
                self.scrub_file()
            return {"identity": identity, "removed": removed}, change

        return await self._in(self._write, run)

    def scrub_file(self) -> None:
        """Rewrite the gallery file without its free pages (``VACUUM``) and truncate its
        write-ahead log, so deleted rows leave no bytes behind in either file. Runs on its
        own connection; readers go on meanwhile (WAL). A database store reclaims the
        space of deleted rows its own way (``scrub``, e.g. PostgreSQL's ``VACUUM``)."""
        if not isinstance(self.gallery.path, Path):
            scrub = getattr(self.gallery._store, "scrub", None)
            if scrub is not None:
                scrub()
            return
        conn = sqlite3.connect(str(self.gallery.path), isolation_level=None, timeout=60.0)
        try:
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
