"""The gallery: enrolled identities, each with one or more reference embeddings, in a
store (an SQLite file by default, or PostgreSQL + pgvector or Milvus: see
:mod:`twinshot.gallery.stores`); identify, verify and search against it.

An identify call goes down five stages, each one module behind one interface:
embed (:mod:`~twinshot.gallery.embedding`: images -> embeddings) -> store
(:mod:`~twinshot.gallery.stores`: the rows, loaded into memory and kept in step, or with
``search="database"`` left in PostgreSQL / Milvus, :mod:`~twinshot.gallery.search_db`) -> search
(:mod:`~twinshot.gallery.search`: exact or approximate top-k rows and identities) -> score
(:mod:`~twinshot.gallery.scoring`: head logits, score normalisation, calibration) -> decide
(:mod:`~twinshot.gallery.decide`: the threshold and the answer). This class holds the
state and the lock, and writes through the store.

The office-entry scenario: each employee enrolls one photo; at the door a new photo is
embedded and compared with every enrolled embedding; above the threshold the person is
recognised, otherwise ``identity=None`` ("unknown").

Search contract (in the style of faiss's ``Index.search``)
-----------------------------------------------------------
* **Scores** are the model head's logits: **higher is more alike**, everywhere (search,
  identify, verify, thresholds). ``probability`` fields map a score through the gallery's
  calibration (:class:`twinshot.gallery.calibration.Calibration`; before calibration, the
  model's own ``sigmoid(score)``).
* :meth:`Gallery.search` on ``Q`` queries with ``k`` returns a :class:`SearchResult` with
  ``scores`` float32 ``(Q, k)``, ``image_ids`` int64 ``(Q, k)`` and ``identities``
  (``Q`` lists of ``k``), each row sorted by decreasing score. When fewer than ``k`` images
  are enrolled, ``k`` is clamped to the number enrolled; columns an approximate index
  could not fill hold score ``-inf``, image id ``-1`` and identity ``None``. Ties are
  returned in an unspecified order. ``k`` must be a positive integer.
* :meth:`Gallery.identify` returns, for each query, up to ``k`` candidate identities
  (fewer only when fewer are enrolled), best first, each scored by the **combination rule**
  over that identity's references: ``"max"`` (default: the best reference's score) or
  ``"mean"`` (the mean of the reference scores). The result's ``identity`` is the best
  candidate when its score is ``>= threshold``, else ``None``; ``score`` is the best
  candidate's score either way.
* Searching an empty gallery raises :class:`twinshot.errors.TwinshotError`.
* Exact search by default; ``index="hnsw"`` (or ``"auto"`` with at least
  :data:`APPROXIMATE_ABOVE` embeddings) finds candidates with faiss HNSW and scores them
  exactly, so scores stay exact and only recall is approximate.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from twinshot.errors import ConfigError, DamagedError, DataError, TwinshotError
from twinshot.gallery.audit import Actor, AuditEntry
from twinshot.gallery.names import check_metadata, lookup_name, normalize_identity
from twinshot.gallery.calibration import DEFAULT_THRESHOLD, Calibration, CalibrationReport, calibrate_scores
from twinshot.gallery.identification import META_KEY as IDENTIFICATION_META
from twinshot.gallery.scorenorm import normalised_pair_score, stored_norm
from twinshot.gallery.embedding import (
    Embedder,
    TorchEmbedder,
    _to_numpy,
    as_embedder,
    as_sequence,
    embed_sources,
    embed_uint8,
    encode_original,
    read_listing_bytes,
)
from twinshot.gallery.files import ModelRef, model_meta, reembed_store, resolve_model
from twinshot.gallery.results import EnrollResult, Identification, SearchResult, Verification
from twinshot.gallery.index import ExactIndex, HNSWConfig, HNSWIndex, Queries, Scorer, StoredMatrix, import_faiss
from twinshot.gallery.search import Candidates, Grouping, RowSearch
from twinshot.gallery.search_db import SEARCH_KINDS, DatabaseSearch, choose_search
from twinshot.gallery.scoring import score_identities
from twinshot.gallery.decide import decide, search_result
from twinshot.gallery.store import IdentityRecord, NewIdentity, StoredRows, WriteResult
from twinshot.gallery.stores import Store, create_store, open_store
from twinshot.gallery.validate import check_k, check_positive, check_threshold, read_settings

#: Combination rules for several references of one identity.
RULES = ("max", "mean")
#: Index choices: exact search, faiss HNSW, or HNSW from :data:`APPROXIMATE_ABOVE` embeddings.
INDEX_KINDS = ("auto", "exact", "hnsw")
#: With ``index="auto"``, galleries with at least this many embeddings use HNSW.
APPROXIMATE_ABOVE = 2_000_000

#: ``progress(stage, done, total)`` with stage ``"decode"``, ``"embed"`` or ``"store"``.
Progress = Callable[[str, int, int], None]


# -- verifying two images ------------------------------------------------------------------


def verify_images(
    model: ModelRef,
    image1: Any,
    image2: Any,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    calibration: Calibration | None = None,
    inference: str = "auto",
) -> Verification:
    """Score two images with a model: the head's logit, its (calibrated) probability, and
    the decision ``logit >= threshold``. Without a calibration the probability is the
    model's own ``sigmoid(logit)`` and the default threshold is logit 0 (probability 0.5).

    ``model`` is anything :func:`resolve_model` takes (a ``.onnx`` export runs without
    torch); ``inference`` picks the runtime (``"auto"``, ``"torch"``, ``"onnx"``; see
    :mod:`twinshot.gallery.inference`)."""
    from twinshot.gallery.inference import load_embedder

    embedder, _ = load_embedder(model, inference=inference)
    e = embed_sources(embedder, [image1, image2])
    score = float(embedder.logits(e[0:1], e[1:2])[0])
    calibration = calibration or Calibration()
    return Verification(
        probability=float(calibration.probability(score)), score=score, same=score >= threshold, threshold=float(threshold)
    )


# -- in-memory state -----------------------------------------------------------------------


class Gallery:
    """A persistent gallery of enrolled identities. Create with :meth:`create`, open with
    :meth:`open`; use as a context manager (or call :meth:`close`).

    Thread-safe: one lock serialises the public methods of one ``Gallery`` object. Several
    processes may share the file (SQLite WAL); a gallery notices another process's changes
    before each search and reloads.
    """

    def __init__(
        self,
        store: Store,
        model: Any,
        *,
        index: str = "auto",
        hnsw: HNSWConfig | None = None,
        batch_size: int = 256,
        inference: str = "auto",
        actor: Actor | None = None,
        search: str = "auto",
    ) -> None:
        if index not in INDEX_KINDS:
            raise ConfigError(f"unknown index {index!r}; valid: {', '.join(INDEX_KINDS)}")
        if search not in SEARCH_KINDS:
            raise ConfigError(f"unknown search {search!r}; valid: {', '.join(SEARCH_KINDS)}")
        self._store = store
        #: who the audit trail names for this object's changes (a call may name another)
        self.actor = actor or Actor()
        self._set_model(model)
        self.inference = inference
        self.index_kind = index
        #: where the rows are searched: ``"memory"`` (loaded) or ``"database"`` (see
        #: :mod:`twinshot.gallery.search_db`; ``"auto"`` is resolved here, once)
        self.search_kind = choose_search(search, store, Scorer(self.embedder.head), index)
        self.hnsw_config = hnsw or HNSWConfig()
        self.batch_size = batch_size
        self._lock = threading.RLock()
        self._names: dict[int, str] = {}
        self._hnsw: HNSWIndex | None = None
        self._load()

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        model: ModelRef,
        *,
        keep_images: bool = False,
        rule: str = "max",
        threshold: float = DEFAULT_THRESHOLD,
        overwrite: bool = False,
        index: str = "auto",
        inference: str = "auto",
        search: str = "auto",
    ) -> Gallery:
        """Create an empty gallery file for ``model`` (a model, a checkpoint path, a
        shipped model's name, or a ``.onnx`` export).

        Args:
            keep_images: also store each reference's original image (needed to
                :meth:`reembed` into a new model later); off by default.
            rule: how several references of one identity combine: ``"max"`` or ``"mean"``.
            threshold: the initial acceptance threshold (a logit) until :meth:`calibrate`.
            overwrite: replace an existing file.
            inference: ``"auto"`` (ONNX Runtime when available for a model given by
                reference, else torch), ``"torch"`` or ``"onnx"``; see
                :mod:`twinshot.gallery.inference`.
        """
        if rule not in RULES:
            raise ConfigError(f"unknown rule {rule!r}; valid: {', '.join(RULES)}")
        threshold = check_threshold(threshold)
        model, ref = resolve_model(model, inference=inference)
        embedder = as_embedder(model)
        meta = {
            **model_meta(embedder, ref),
            "rule": rule,
            "keep_images": "1" if keep_images else "0",
            "threshold": repr(float(threshold)),
            "calibration": json.dumps(Calibration().to_dict()),
            "calibration_report": "",
        }
        store = create_store(path, meta, overwrite=overwrite)
        try:
            return cls(store, embedder, index=index, inference=inference, search=search)
        except BaseException:
            store.close()
            raise

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        model: ModelRef | None = None,
        *,
        index: str = "auto",
        hnsw: HNSWConfig | None = None,
        inference: str = "auto",
        readonly: bool = False,
        actor: Actor | None = None,
        search: str = "auto",
    ) -> Gallery:
        """Open a gallery and load every embedding into memory (or, with
        ``search="database"``, none: see below).

        Args:
            model: the model to use; by default the one the gallery was created with (its
                stored reference). Refused when its fingerprint differs from the gallery's.
                A ``.onnx`` export of the gallery's model has its fingerprint, so a gallery
                enrolled with the torch model opens unchanged with the ONNX file.
            index: ``"exact"``, ``"hnsw"`` or ``"auto"``.
            inference: ``"auto"``, ``"torch"`` or ``"onnx"`` (see :mod:`twinshot.gallery.inference`).
            readonly: open the file read-only (never written; changes raise
                :class:`~twinshot.errors.ReadOnlyError`). A gallery this process cannot
                write is opened read-only anyway: see :attr:`read_only`.
            actor: who the audit trail names for changes made through this object.
            search: ``"memory"`` (the rows are loaded and searched in process),
                ``"database"`` (PostgreSQL and Milvus galleries only: the database finds
                each query's candidate rows, only those are fetched and scored; for
                galleries bigger than memory; see :mod:`twinshot.gallery.search_db`), or
                ``"auto"`` (default: ``"database"`` where it works and the vectors would
                take more than :data:`~twinshot.gallery.search_db.MEMORY_BUDGET` bytes,
                else ``"memory"``; :attr:`search_kind` says which).

        Raises:
            TwinshotError: no such file, not a gallery, the model cannot be found, or the
                model's fingerprint differs from the gallery's.
        """
        store = open_store(path, readonly=readonly)
        try:
            meta = store.meta()
            if model is None:
                ref = meta.get("model_ref", "")
                if not ref:
                    raise TwinshotError(f"{path}: the gallery's model was never saved to a file; pass the model (--model)")
                try:
                    model, _ = resolve_model(ref, inference=inference)
                except TwinshotError as exc:
                    raise TwinshotError(f"{path}: cannot load the gallery's model ({exc}); pass it with --model") from None
            else:
                model, _ = resolve_model(model, inference=inference)
            embedder = as_embedder(model)
            expected, actual = meta.get("fingerprint", ""), embedder.fingerprint
            if expected != actual:
                raise TwinshotError(
                    f"{path}: model mismatch: the gallery was enrolled with model {meta.get('model_ref') or '?'} "
                    f"(fingerprint {expected[:12]}), the model given has fingerprint {actual[:12]}; open it "
                    f"with the original model, or migrate it with `twinshot gallery reembed` (needs kept images)"
                )
            return cls(store, embedder, index=index, hnsw=hnsw, inference=inference, actor=actor, search=search)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _set_model(self, model: Any) -> None:
        embedder = as_embedder(model)
        if embedder.head is None:
            raise TwinshotError(
                f"{embedder!r}: its head ({embedder.head_name}) cannot be scored without torch; "
                f"use the torch model (inference='torch')"
            )
        self.embedder: Embedder = embedder
        #: the model that runs: a ``SiameseNetwork`` on torch, else the embedder itself.
        self.model: Any = embedder.model if isinstance(embedder, TorchEmbedder) else embedder

    @property
    def backend(self) -> str:
        """``"torch"`` or ``"onnxruntime"``: what embeds images."""
        return "torch" if isinstance(self.embedder, TorchEmbedder) else "onnxruntime"

    # -- settings ----------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._store.path

    @property
    def location(self) -> Any:
        """What opens this gallery again: its file, or its store URI as given (a password
        included: print :attr:`path`, which redacts it)."""
        return getattr(self._store, "location", self._store.path)

    @property
    def read_only(self) -> str | None:
        """Why this gallery cannot be changed here (a read-only file or folder, or opened
        ``readonly``), or None when it can."""
        return self._store.read_only

    @property
    def rule(self) -> str:
        return self._settings.rule

    @property
    def threshold(self) -> float:
        """The acceptance threshold: a logit; accept when ``score >= threshold``."""
        return self._settings.threshold

    @property
    def calibration(self) -> Calibration:
        return self._settings.calibration

    @property
    def calibration_report(self) -> CalibrationReport | None:
        return self._settings.report

    @property
    def keep_images(self) -> bool:
        return self._meta.get("keep_images") == "1"

    @property
    def fingerprint(self) -> str:
        return self._meta["fingerprint"]

    @property
    def model_ref(self) -> str:
        return self._meta.get("model_ref", "")

    @property
    def dim(self) -> int:
        return self._store.dim

    @property
    def n_embeddings(self) -> int:
        if self._db is not None:
            return self._db_count("embeddings", self._store.count_embeddings)
        return int(self._ids.size)

    def __len__(self) -> int:
        """The number of enrolled identities."""
        if self._db is not None:
            return self._db_count("identities", self._store.count_identities)
        return int(self._grouping().ident_ids.size)

    def _db_count(self, what: str, count: Callable[[], int]) -> int:
        """A count from the database, cached until the gallery's generation changes."""
        key = (what, self._generation)
        if key not in self._counts:
            self._counts = {k: v for k, v in self._counts.items() if k[1] == self._generation}
            self._counts[key] = int(count())
        return self._counts[key]

    def set_threshold(self, threshold: float, *, actor: Actor | None = None) -> None:
        """Set the acceptance threshold (a logit) by hand."""
        threshold = check_threshold(threshold)
        with self._lock:
            self._write_meta({"threshold": repr(threshold)}, self._audit("set", details={"threshold": threshold}, actor=actor))

    def set_rule(self, rule: str, *, actor: Actor | None = None) -> None:
        """Set the combination rule (``"max"`` or ``"mean"``) stored with the gallery."""
        if rule not in RULES:
            raise ConfigError(f"unknown rule {rule!r}; valid: {', '.join(RULES)}")
        with self._lock:
            self._write_meta({"rule": rule}, self._audit("set", details={"rule": rule}, actor=actor))

    def _audit(self, action: str, identities: Sequence[str] = (), details: dict[str, Any] | None = None, actor: Actor | None = None) -> AuditEntry:
        return AuditEntry(action, list(identities), details or {}, actor or self.actor)

    def audit(self, after: int = 0) -> list[dict[str, Any]]:
        """The gallery's audit records with ids above ``after``, oldest first (see
        :mod:`twinshot.gallery.audit`)."""
        with self._lock:
            return self._store.read_audit(after)

    @property
    def last_change_id(self) -> int | None:
        """The audit row id of the last change made through this object (see
        :mod:`twinshot.gallery.audit`)."""
        return self._store.last_audit_id

    def _write_meta(self, updates: dict[str, str], audit: AuditEntry | None = None) -> None:
        self._refresh()
        self._store.set_meta(updates, audit=audit)
        self._after_write()

    def info(self) -> dict[str, Any]:
        """A summary: path, model, counts, threshold, calibration, rule."""
        with self._lock:
            self._refresh()
            report = self.calibration_report
            return {
                "gallery": str(self.path),
                "model": self.model_ref,
                "fingerprint": self.fingerprint,
                "dim": self.dim,
                "n_identities": len(self),
                "n_embeddings": self.n_embeddings,
                "keep_images": self.keep_images,
                "rule": self.rule,
                "threshold": self.threshold,
                "calibration": self.calibration.to_dict(),
                "calibration_report": report.to_dict() if report else None,
                "index": self._index_in_use(),
                "search": self.search_kind,
                "inference": self.backend,
            }

    def identities(self) -> list[IdentityRecord]:
        """Every enrolled identity (name, metadata, number of references, created), by name."""
        with self._lock:
            return self._store.list_identities()

    def identity_names(self) -> list[str]:
        return [r.name for r in self.identities()]

    def check(self) -> dict[str, int]:
        """Check the file's integrity and that memory matches it (see
        :meth:`GalleryStore.check`); returns counts."""
        with self._lock:
            counts = self._store.check()
            self._refresh()
            if self._db is None and counts["embeddings"] != self.n_embeddings:
                raise TwinshotError(f"{self.path}: memory holds {self.n_embeddings} embeddings, the file {counts['embeddings']}")
            return counts

    # -- loading -------------------------------------------------------------------------

    def _load(self) -> None:
        """(Re)build the in-memory state from the file."""
        self._meta = self._store.meta()
        self._settings = read_settings(self._meta, self.path)
        self._generation = self._settings.generation
        self._counts: dict[tuple[str, int], int] = {}
        if self.search_kind == "database":  # nothing loaded: the database searches
            self._db: DatabaseSearch | None = DatabaseSearch(
                Scorer(self.embedder.head), self._store, self.embedder.head_name, index=self.index_kind, hnsw=self.hnsw_config
            )
            self._rows: RowSearch | None = None
        else:
            self._db = None
            self._rows = RowSearch(Scorer(self.embedder.head), self._store.load_rows(), self._store.dim)
        self._hnsw = None
        self._rows_version = getattr(self, "_rows_version", 0) + 1  # bumped whenever rows change
        self._hnsw_version = -1

    def _refresh(self) -> None:
        try:
            generation = self._store.generation()
        except ValueError:
            raise DamagedError(f"{self.path}: the gallery is damaged (its generation counter); run `twinshot gallery check`") from None
        if generation != self._generation:
            self._load()

    def _after_write(self, result: WriteResult | None = None, removed: np.ndarray | None = None, added: StoredRows | None = None) -> None:
        """Bring memory up to date after our own write (or reload if someone else wrote too)."""
        generation = self._store.generation()
        if generation != self._generation + 1:
            self._load()
            return
        self._generation = generation
        self._meta = self._store.meta()
        self._settings = read_settings(self._meta, self.path)
        if self._rows is None:
            return  # searched in the database: no rows in memory to update
        if removed is not None and removed.size:
            self._rows.remove(removed)
            self._rows_version += 1
        if added is not None and added.ids.size:
            self._rows.append(added)
            self._rows_version += 1

    # the rows in memory (see gallery/search.py), under the names the rest of the package uses
    @property
    def _ids(self) -> np.ndarray:
        return self._rows.ids

    @property
    def _identity_ids(self) -> np.ndarray:
        return self._rows.identity_ids

    @property
    def _scorer(self) -> Scorer:
        return self._db.scorer if self._db is not None else self._rows.scorer

    @property
    def _matrix(self) -> StoredMatrix:
        return self._rows.matrix

    @property
    def _exact(self) -> ExactIndex:
        return self._rows.exact

    def _grouping(self) -> Grouping:
        return self._rows.grouping()

    def _names_of(self, identity_ids: Iterable[int]) -> dict[int, str]:
        wanted = {int(i) for i in identity_ids if i >= 0}
        missing = wanted - self._names.keys()
        if missing:
            self._names.update(self._store.identity_names(sorted(missing)))
            if missing - self._names.keys():
                raise DamagedError(
                    f"{self.path}: the gallery is damaged (embeddings of identities that do not exist); "
                    f"run `twinshot gallery check {self.path}`"
                )
        return {i: self._names[i] for i in wanted}

    # -- embedding -----------------------------------------------------------------------

    def embed(self, images: Any, *, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Decode and embed one image or several with the gallery's model: float32 ``(N, D)``."""
        return embed_sources(self.embedder, as_sequence(images), batch_size=self.batch_size, progress=progress)

    # -- enrolling -----------------------------------------------------------------------

    def _on_exists(self, replace: bool, add: bool) -> str:
        if replace and add:
            raise ConfigError("choose one of replace (--replace) and add (--add)")
        return "replace" if replace else "add" if add else "error"

    def _write(self, items: Sequence[NewIdentity], on_exists: str, progress: Progress | None, actor: Actor | None = None) -> list[EnrollResult]:
        vectors = np.concatenate([it.vectors for it in items])
        if not np.all(np.isfinite(vectors)):
            bad = next(it.name for it in items if not np.all(np.isfinite(it.vectors)))
            raise DataError(f"identity {bad!r}: embeddings contain NaN or infinite values")
        self._refresh()
        audit = self._audit(
            "enroll", [it.name for it in items], {"references": int(vectors.shape[0]), "mode": on_exists}, actor
        )
        result = self._store.write_identities(items, on_exists=on_exists, progress=progress, audit=audit)
        counts = [it.vectors.shape[0] for it in items]
        added = StoredRows(
            ids=np.concatenate(result.image_ids),
            identity_ids=np.repeat(np.array(result.identity_ids, np.int64), counts),
            vectors=vectors,
        )
        self._after_write(removed=result.removed_ids, added=added)
        for it, iid in zip(items, result.identity_ids):
            self._names[iid] = it.name
        return [
            EnrollResult(it.name, ids.tolist(), n_removed, new)
            for it, ids, n_removed, new in zip(items, result.image_ids, result.removed_counts, result.new_identity)
        ]

    def enroll(
        self,
        identity: str,
        images: Any,
        metadata: dict[str, Any] | None = None,
        *,
        replace: bool = False,
        add: bool = False,
        progress: Progress | None = None,
        actor: Actor | None = None,
    ) -> EnrollResult:
        """Enroll ``identity`` with one or more reference images, in one transaction.

        Args:
            identity: the name (see :mod:`twinshot.gallery.names`: NFC-normalised, no
                control characters, at most 128 characters).
            images: one image or several: paths, encoded bytes, arrays or tensors
                (``(H, W)``, ``(H, W, C)``, ``(C, H, W)``, or a ``(N, C, H, W)`` batch), PIL
                images. They are converted to the model's channels and size.
            metadata: a JSON-serialisable dict stored with the identity.
            replace: if ``identity`` is enrolled, replace its references (and metadata).
            add: if ``identity`` is enrolled, add these references to its own.
            actor: who the audit trail names (default: :attr:`actor`).

        Without ``replace`` or ``add``, enrolling a name that is already enrolled is refused.
        Every image is decoded and embedded before anything is written; an unreadable image
        raises :class:`DataError` naming it and leaves the gallery unchanged.
        """
        identity = normalize_identity(identity)
        check_metadata(metadata, name=identity)
        sources = as_sequence(images)
        vectors = embed_sources(self.embedder, sources, batch_size=self.batch_size, progress=_stage(progress, "embed"))
        kept = [encode_original(s) for s in sources] if self.keep_images else None
        return self.enroll_embeddings(identity, vectors, metadata, replace=replace, add=add, images=kept, progress=progress, actor=actor)

    def enroll_embeddings(
        self,
        identity: str,
        embeddings: Any,
        metadata: dict[str, Any] | None = None,
        *,
        replace: bool = False,
        add: bool = False,
        images: Sequence[bytes] | None = None,
        progress: Progress | None = None,
        actor: Actor | None = None,
    ) -> EnrollResult:
        """Enroll precomputed embeddings ``(n, D)`` of the gallery's model (see :meth:`enroll`).
        ``images`` (encoded bytes, one per row) are kept when the gallery keeps images."""
        return self.enroll_many([(identity, embeddings, metadata, images)], replace=replace, add=add, progress=progress, actor=actor)[0]

    def enroll_many(
        self,
        entries: Iterable[tuple[str, Any, dict[str, Any] | None, Sequence[bytes] | None]],
        *,
        replace: bool = False,
        add: bool = False,
        progress: Progress | None = None,
        actor: Actor | None = None,
    ) -> list[EnrollResult]:
        """Enroll many identities from precomputed embeddings in **one** transaction:
        ``entries`` of ``(identity, embeddings (n, D), metadata or None, images or None)``.
        If any identity is refused, none is enrolled."""
        items = []
        for name, vectors, metadata, images in entries:
            items.append(self._item(name, vectors, metadata, images))
        if not items:
            raise DataError("nothing to enroll")
        with self._lock:
            return self._write(items, self._on_exists(replace, add), progress, actor)

    def _item(self, name: str, vectors: Any, metadata: dict[str, Any] | None, images: Sequence[bytes] | None) -> NewIdentity:
        name = normalize_identity(name)
        metadata = check_metadata(metadata, name=name)
        vectors = np.asarray(_to_numpy(vectors), dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None]
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise DataError(f"identity {name!r}: embeddings of shape {vectors.shape} do not match the gallery's dimension {self.dim}")
        if not self.keep_images:
            images = None
        elif images is None:
            raise DataError(f"{self.path} keeps images: identity {name!r} needs one image per embedding")
        return NewIdentity(name=name, vectors=vectors, metadata=metadata, images=images)

    def enroll_folder(
        self,
        folder: str | os.PathLike,
        *,
        replace: bool = False,
        add: bool = False,
        progress: Progress | None = None,
        workers: int | None = None,
        actor: Actor | None = None,
    ) -> list[EnrollResult]:
        """Enroll every class folder of ``folder`` (or a .zip with that layout) as one
        identity named by its path (``"Latin/character01"``), with all its images as
        references, in one transaction: decoded in parallel, embedded in batches.

        ``progress(stage, done, total)`` reports ``"decode"``, ``"embed"`` and ``"store"``.
        """
        from twinshot.data.sources import decode_listing, list_images

        listing = list_images(folder)
        n = len(listing.members)
        done = [0]

        def on_decode(step: int) -> None:
            done[0] += step
            if progress is not None:
                progress("decode", done[0], n)

        n_workers = (os.cpu_count() or 1) if workers is None else workers
        images = decode_listing(listing, self.embedder.preprocessing, workers=n_workers, on_progress=on_decode)
        vectors = embed_uint8(self.embedder, images, batch_size=self.batch_size, progress=_stage(progress, "embed"))
        labels = np.asarray(listing.labels)
        kept: list[bytes] | None = None
        if self.keep_images:
            kept = read_listing_bytes(listing)
        entries = []
        for c, name in enumerate(listing.class_names):
            rows = np.nonzero(labels == c)[0]
            entries.append((name, vectors[rows], None, [kept[i] for i in rows] if kept is not None else None))
        return self.enroll_many(entries, replace=replace, add=add, progress=progress, actor=actor)

    def remove(self, identity: str, *, actor: Actor | None = None) -> int:
        """Remove an identity and all its references, in one transaction (with its audit
        record); returns how many references were removed. Raises TwinshotError if it is
        not enrolled."""
        with self._lock:
            self._refresh()
            name = lookup_name(identity)
            audit = self._audit("remove", [name], {}, actor)
            removed = self._store.remove_identity(name, audit=audit)
            self._after_write(removed=removed)
            return int(removed.size)

    # -- searching -----------------------------------------------------------------------

    def _index_in_use(self) -> str:
        if self._db is not None:
            return self._db.kind
        if self.index_kind == "exact":
            return "exact"
        if self.index_kind == "hnsw":
            return "hnsw"
        if self.n_embeddings >= APPROXIMATE_ABOVE and self._scorer.kind != "generic" and self._scorer.sign > 0:
            if getattr(self._store, "ann_index", None) is not None:
                return "hnsw"  # the database's own index (no faiss needed)
            try:
                import_faiss()
                return "hnsw"
            except TwinshotError:
                return "exact"
        return "exact"

    def _ann(self) -> HNSWIndex:
        """The HNSW index, loaded from the file's cache or built, and synced with memory."""
        own_index = getattr(self._store, "ann_index", None)  # a database with its own ANN index
        if self._hnsw is None and own_index is not None:
            self._hnsw = own_index(self._scorer, self.hnsw_config)
        if self._hnsw is None:
            hnsw = HNSWIndex(self._scorer, self.hnsw_config)
            cached = self._store.read_ann(hnsw.kind)
            if cached is not None:
                hnsw.load(cached[2], cached[1])
                reindexed = hnsw.sync(self._matrix.data, self._ids)
            else:
                hnsw.build(self._matrix.data, self._ids)
                reindexed = hnsw.ids.size
            if cached is None or reindexed > 0.1 * max(1, hnsw.ids.size):
                self._store.write_ann(hnsw.kind, hnsw.ids, hnsw.serialize())
            self._hnsw = hnsw
        elif self._hnsw_version != self._rows_version:
            self._hnsw.sync(self._matrix.data, self._ids)
        self._hnsw_version = self._rows_version
        return self._hnsw

    def build_index(self) -> dict[str, Any]:
        """Build (or rebuild) the HNSW index now and store it in the file, so later opens
        load it instead of building it. Returns its size."""
        with self._lock:
            self._refresh()
            own_index = getattr(self._store, "ann_index", None)
            if self._db is not None and own_index is None:
                raise ConfigError(f"{self.path}: this store has no index of its own to build")
            if own_index is not None:  # the database builds and keeps its own index
                self._hnsw = own_index(self._scorer, self.hnsw_config)
                self._hnsw_version = self._rows_version
                return self._hnsw.build_now()
            hnsw = HNSWIndex(self._scorer, self.hnsw_config)
            hnsw.build(self._matrix.data, self._ids)
            self._store.write_ann(hnsw.kind, hnsw.ids, hnsw.serialize())
            self._hnsw = hnsw
            self._hnsw_version = self._rows_version
            return {"kind": hnsw.kind, "rows": int(hnsw.ids.size), "m": self.hnsw_config.m}

    def _queries(self, embeddings: Any) -> Queries:
        q = np.asarray(_to_numpy(embeddings), dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise DataError(f"query embeddings of shape {q.shape} do not match the gallery's dimension {self.dim}")
        return self._scorer.prepare_queries(q)

    def _require_entries(self) -> None:
        """Refuse to search an empty gallery (when the database searches, :meth:`_view`
        checks, without counting every row)."""
        if self._db is None and self.n_embeddings == 0:
            raise TwinshotError(f"{self.path}: the gallery is empty; enroll identities first")

    def search(self, images: Any, k: int = 10) -> SearchResult:
        """The ``k`` nearest enrolled images of each query image (see the search contract)."""
        return self.search_embeddings(self.embed(images), k)

    def search_embeddings(self, embeddings: Any, k: int = 10) -> SearchResult:
        """:meth:`search` for precomputed query embeddings ``(Q, D)``."""
        k = check_k(k)
        with self._lock:
            self._refresh()
            self._require_entries()
            q = self._queries(embeddings)
            view, ann = self._view(q, k, None)
            # clamp k to the images enrolled (an exact database view holds them all when
            # there are fewer than k; an approximate one may not, so count them)
            k = min(k, self.n_embeddings if ann is not None or (self._db is not None and not self._db.exact) else len(view))
            logits, rows = view.rows(q, k, ann)
            return search_result(logits, rows, view.ids, view.identity_ids, self._names_of, self.calibration.probability)

    def identify(self, images: Any, k: int = 5, *, threshold: float | None = None, rule: str | None = None) -> list[Identification]:
        """For each query image, up to ``k`` candidate identities and the decision at the
        threshold (see the search contract). ``threshold`` and ``rule`` default to the
        gallery's."""
        return self.identify_embeddings(self.embed(images), k, threshold=threshold, rule=rule)

    def identify_embeddings(
        self,
        embeddings: Any,
        k: int = 5,
        *,
        threshold: float | None = None,
        rule: str | None = None,
    ) -> list[Identification]:
        """:meth:`identify` for precomputed query embeddings ``(Q, D)``."""
        k = check_k(k)
        with self._lock:
            self._refresh()
            rule = rule or self.rule
            if rule not in RULES:
                raise ConfigError(f"unknown rule {rule!r}; valid: {', '.join(RULES)}")
            self._require_entries()
            threshold = self.threshold if threshold is None else check_threshold(threshold, infinite=True)
            q = self._queries(embeddings)  # embed (done by the caller) -> store (in memory) ->
            scored = score_identities(self, q, k, rule)  # search -> score ->
            return decide(scored, self._names_of(scored.identity_ids.ravel().tolist()), threshold)  # decide

    def _candidates(self) -> Candidates | None:
        """The approximate index proposing candidates, or None for exact search."""
        return self._ann() if self._index_in_use() == "hnsw" else None

    def _view(self, q: Queries, k: int, rule: str | None) -> tuple[RowSearch, Candidates | None]:
        """The rows to search for ``q`` (the best ``k`` rows, or identities under ``rule``)
        and the approximate index over them (None: exact): every row in memory, or, when
        the database searches, a view of just the candidate rows it found."""
        if self._db is not None:
            view = self._db.view(q, k, rule)
            if len(view) == 0:
                raise TwinshotError(f"{self.path}: the gallery is empty; enroll identities first")
            return view, None
        return self._rows, self._candidates()

    def _identity_view(self, identity_id: int) -> RowSearch:
        """The rows that hold ``identity_id``'s references (all rows in memory)."""
        if self._db is not None:
            return self._db.identity_view([identity_id])
        return self._rows

    def _top_identities(self, q: Queries, k: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`RowSearch.identities`."""
        return self._rows.identities(q, k, rule, self._candidates())

    def _aggregate(self, q: Queries, k: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
        return self._rows.aggregate(q, k, rule)

    def _aggregate_numpy(self, q: Queries, k: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
        return self._rows.aggregate_numpy(q, k, rule)

    def _score_identities(self, q: Queries, cand: np.ndarray, k: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
        return self._rows.score_identities(q, cand, k, rule)

    # -- verifying ------------------------------------------------------------------------

    def verify(self, image1: Any, image2: Any) -> Verification:
        """Do two images show the same identity? The calibrated probability and the decision
        at the gallery's threshold (neither image needs to be enrolled)."""
        with self._lock:
            self._refresh()
            norm = stored_norm(self._meta)
            result = verify_images(self.embedder, image1, image2, threshold=self.threshold, calibration=self.calibration)
            if norm is None:
                return result
            e = embed_sources(self.embedder, [image1, image2])
            score = normalised_pair_score(self.embedder, norm, e[0:1], e[1:2])
            return Verification(probability=result.probability, score=score, same=score >= self.threshold, threshold=self.threshold)

    def verify_claim(
        self, identity: str, image: Any, *, threshold: float | None = None, rule: str | None = None, scoring: str = "distance"
    ) -> Any:
        """Is ``image`` of the enrolled ``identity``? It is compared with all of that
        identity's references under the gallery's rule (or ``rule``), at its threshold;
        returns a :class:`twinshot.gallery.claims.ClaimVerification` (``UnknownIdentity``
        when ``identity`` is not enrolled). See :mod:`twinshot.gallery.claims`.
        ``scoring="svm"``: scored by the identity's own SVM instead (needs kept images; an
        :class:`~twinshot.writer_dependent.gallery_claims.SVMClaimVerification`, see
        :mod:`twinshot.writer_dependent.gallery_claims`); ``"fused"``: that SVM plus the pair
        model stored with the gallery's model (:mod:`twinshot.writer_dependent.fusion`)."""
        from twinshot.gallery.claims import verify_claim_embeddings

        if scoring != "distance":
            from twinshot.writer_dependent.gallery_claims import verify_claim_scored

            return verify_claim_scored(self, identity, image, scoring, threshold=threshold)

        (result,) = verify_claim_embeddings(self, identity, self.embed([image]), threshold=threshold, rule=rule)
        return result

    # -- calibrating ----------------------------------------------------------------------

    def calibrate(
        self,
        *,
        pairs: str | os.PathLike | None = None,
        folder: str | os.PathLike | None = None,
        far: float | None = None,
        eer: bool = False,
        method: str = "platt",
        n_pairs: int = 4000,
        seed: int = 0,
        n_boot: int = 1000,
        progress: bool = False,
        actor: Actor | None = None,
    ) -> CalibrationReport:
        """Fit the threshold (for a target false accept rate ``far``, or at the equal error
        rate with ``eer=True``) and the probability calibration on labelled data that is not
        the gallery: a pairs CSV ``path1,path2,same`` (``pairs``) or a labelled folder of
        class folders (``folder``) from which ``n_pairs`` genuine and impostor pairs are
        drawn with ``seed``. Stores both with the gallery (one transaction).

        Note the threshold is fitted on *pairs*: identifying against ``M`` identities gives
        each unknown query ``M`` chances to be accepted, so its false positive
        identification rate is about ``1 - (1 - far) ** M`` (see docs/gallery.md).
        """
        from twinshot.gallery.calibration import folder_pair_scores, pairs_csv_scores

        if (pairs is None) == (folder is None):
            raise ConfigError("give exactly one of a pairs CSV (--pairs) or a labelled folder (--folder)")
        check_positive("n_pairs", n_pairs, minimum=2)
        check_positive("n_boot", n_boot, minimum=1)
        check_positive("seed", seed, minimum=0)
        if seed >= 2**32:
            raise ConfigError(f"seed must be below 2**32, got {seed}")
        if (far is None) == (not eer):
            raise ConfigError("give exactly one of a target false accept rate (--far RATE) or --eer")
        if pairs is not None:
            scores, same = pairs_csv_scores(self.embedder, pairs, batch_size=self.batch_size, progress=progress)
            source = f"pairs:{pairs}"
        else:
            scores, same = folder_pair_scores(self.embedder, folder, n_pairs=n_pairs, seed=seed, batch_size=self.batch_size, progress=progress)  # type: ignore[arg-type]
            source = f"folder:{folder} ({n_pairs} pairs, seed {seed})"
        return self.calibrate_scores(scores, same, far=far, eer=eer, method=method, n_boot=n_boot, seed=seed, source=source, actor=actor)

    def calibrate_scores(
        self,
        scores: np.ndarray,
        same: np.ndarray,
        *,
        far: float | None = None,
        eer: bool = False,
        method: str = "platt",
        n_boot: int = 1000,
        seed: int = 0,
        source: str = "",
        actor: Actor | None = None,
    ) -> CalibrationReport:
        """:meth:`calibrate` from precomputed pair scores (logits of this gallery's model)."""
        report = calibrate_scores(scores, same, far=far, eer=eer, method=method, n_boot=n_boot, seed=seed, source=source)
        with self._lock:
            self._write_meta(
                {
                    "threshold": repr(report.threshold),
                    "calibration": json.dumps(report.calibration.to_dict()),
                    "calibration_report": json.dumps(report.to_dict()),
                    IDENTIFICATION_META: "",  # a pair threshold replaces an FPIR one
                },
                self._audit("calibrate", details={"target": report.target, "threshold": report.threshold, "source": source}, actor=actor),
            )
        return report

    # -- migrating ------------------------------------------------------------------------

    def reembed(self, model: ModelRef, *, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Migrate the gallery to a new model by embedding the kept reference images again,
        in one transaction. The threshold and calibration belong to the old model's scores,
        so they are reset (calibrate again). Needs a gallery created with ``keep_images``."""
        with self._lock:
            self._refresh()
            new_model, ref = resolve_model(model, inference=self.inference)
            summary = reembed_store(self._store, new_model, ref, batch_size=self.batch_size, progress=progress)
            self._set_model(new_model)
            self._hnsw = None
            self._load()
            return summary


def _stage(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)


