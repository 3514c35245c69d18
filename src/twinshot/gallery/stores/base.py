"""The one interface every gallery store implements (:class:`Store`), and the checks that
every store applies the same way before it writes.

A store keeps a gallery's settings (``meta``), identities, embeddings, optionally the
kept reference images, and the audit trail. :class:`twinshot.gallery.Gallery` talks to a
store only through this interface, so the same enroll / identify / verify / search /
remove / calibrate code runs on the embedded SQLite file
(:class:`twinshot.gallery.store.GalleryStore`), on PostgreSQL + pgvector
(:class:`twinshot.gallery.stores.postgres.PostgresStore`) and on Milvus
(:class:`twinshot.gallery.stores.milvus.MilvusStore`).

Contract shared by every store:

* image ids (``int64``) are assigned by the store, strictly increasing, never reused;
* one identity's references land together or not at all (a write that fails leaves no
  reference of that identity visible); on SQLite and PostgreSQL a whole enrollment is one
  transaction;
* every change increments :meth:`Store.generation`, so a :class:`Gallery` in another
  process notices it and reloads;
* the model fingerprint is stored in ``meta["fingerprint"]`` and checked by the gallery.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from twinshot.errors import DataError, TwinshotError
from twinshot.gallery.audit import AuditEntry
from twinshot.gallery.store import IdentityRecord, NewIdentity, Progress, StoredRows, WriteResult

#: ``on_exists`` choices of :meth:`Store.write_identities`.
ON_EXISTS = ("error", "replace", "add")


@runtime_checkable
class Store(Protocol):
    """A gallery's persistence. ``path`` names it in messages (a file path, or the store's
    URI with its password redacted); ``read_only`` says why it cannot be written (None:
    it can); ``dim`` is the embedding dimension; ``last_audit_id`` the audit row of the last
    change made through this object."""

    path: Any
    read_only: str | None
    dim: int
    last_audit_id: int | None

    def close(self) -> None: ...

    # settings
    def meta(self) -> dict[str, str]: ...
    def generation(self) -> int: ...
    def set_meta(self, updates: dict[str, str], *, audit: AuditEntry | None = None) -> None: ...

    # reading
    def load_rows(self) -> StoredRows: ...
    def identity_id(self, name: str) -> int | None: ...
    def identity_names(self, ids: Sequence[int]) -> dict[int, str]: ...
    def count_identities(self) -> int: ...
    def list_identities(self) -> list[IdentityRecord]: ...
    def image_ids_of(self, identity_id: int) -> np.ndarray: ...
    def images(self, image_ids: Sequence[int]) -> dict[int, bytes]: ...
    def count_images(self) -> int: ...
    def read_audit(self, after: int = 0) -> list[dict[str, Any]]: ...
    def snapshot(self) -> AbstractContextManager[None]: ...

    # writing
    def write_identities(
        self, items: Sequence[NewIdentity], *, on_exists: str = "error", progress: Progress | None = None, audit: AuditEntry | None = None
    ) -> WriteResult: ...
    def remove_identity(self, name: str, *, audit: AuditEntry | None = None) -> np.ndarray: ...
    def rewrite_vectors(self, rows: StoredRows, meta_updates: dict[str, str], *, audit: AuditEntry | None = None) -> None: ...

    # an approximate-index cache (a store with its own index returns None / ignores it)
    def read_ann(self, kind: str) -> tuple[int, np.ndarray, bytes] | None: ...
    def write_ann(self, kind: str, ids: np.ndarray, data: bytes) -> None: ...

    def check(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class Nearest:
    """One query's nearest rows by the database's own distance, nearest first.

    Attributes:
        rows: the rows (image ids, identity ids, float32 vectors ``(n, D)``) in that order
            (**not** image-id order).
        distances: float64 ``(n,)`` the database's distance of each row: cosine distance
            ``1 - cos`` for a cosine head, L2 distance for a euclidean one.
    """

    rows: StoredRows
    distances: np.ndarray
    #: the database had no more rows to give (fewer than asked for)
    exhausted: bool = False


@runtime_checkable
class SearchableStore(Protocol):
    """A store that can search itself (PostgreSQL + pgvector, Milvus): what
    :class:`twinshot.gallery.search_db.DatabaseSearch` needs, so that a gallery bigger than
    the process's memory is searched without loading its rows.

    ``exact_search`` says whether :meth:`nearest_rows` with ``exact=True`` is exact (every
    row compared); ``max_candidates`` is the most rows one query may return (None: any).
    """

    exact_search: bool
    max_candidates: int | None

    def count_embeddings(self) -> int: ...
    def nearest_rows(self, queries: np.ndarray, n: int, kind: str, *, exact: bool, ef_search: int = 100) -> list[Nearest]: ...
    def rows_of_identities(self, identity_ids: Sequence[int]) -> StoredRows: ...


def check_items(items: Sequence[NewIdentity], dim: int, on_exists: str) -> None:
    """Refuse a write before anything is written: an unknown ``on_exists``, a name given
    twice, vectors of the wrong shape, an identity without images, images that do not
    match the vectors."""
    if on_exists not in ON_EXISTS:
        raise ValueError(f"on_exists must be error, replace or add, got {on_exists!r}")
    names = [it.name for it in items]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:3]
        raise DataError(f"identity name(s) given twice in one enrollment: {', '.join(map(repr, dup))}")
    for it in items:
        if it.vectors.ndim != 2 or it.vectors.shape[1] != dim:
            raise DataError(
                f"identity {it.name!r}: embeddings of shape {tuple(it.vectors.shape)} do not match "
                f"the gallery's dimension {dim}"
            )
        if it.vectors.shape[0] == 0:
            raise DataError(f"identity {it.name!r}: no images to enroll")
        if it.images is not None and len(it.images) != it.vectors.shape[0]:
            raise ValueError("one image per embedding is needed")


def already_enrolled(name: str, n_refs: int, n_existing: int) -> TwinshotError:
    """The error for enrolling a name that is enrolled, without replace or add."""
    more = f" (and {n_existing - 1} more)" if n_existing > 1 else ""
    return TwinshotError(
        f"identity {name!r} is already enrolled ({n_refs} reference(s)){more}; use --replace "
        f"(replace=True) to replace its references or --add (add=True) to add to them"
    )


def not_enrolled(name: str, where: Any) -> TwinshotError:
    return TwinshotError(f"identity {name!r} is not enrolled in {where}")


def sorted_rows(ids: np.ndarray, identity_ids: np.ndarray, vectors: np.ndarray) -> StoredRows:
    """:class:`StoredRows` in image-id order."""
    if ids.size > 1 and not np.all(ids[1:] > ids[:-1]):
        order = np.argsort(ids, kind="stable")
        ids, identity_ids, vectors = ids[order], identity_ids[order], vectors[order]
    return StoredRows(ids=ids, identity_ids=identity_ids, vectors=vectors)
