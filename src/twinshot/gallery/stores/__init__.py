"""Gallery stores: where a gallery's identities and embeddings live.

:func:`open_store` and :func:`create_store` pick the store from the location the user
gives (see :mod:`twinshot.gallery.stores.uri`): a file path is the embedded SQLite store,
``postgresql://...`` PostgreSQL + pgvector, ``milvus://...`` / ``milvus-lite:...`` Milvus.
Every store implements :class:`twinshot.gallery.stores.base.Store`.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from twinshot.errors import ConfigError
from twinshot.gallery.stores.base import Store
from twinshot.gallery.stores.uri import StoreURI, is_uri, parse, redact


def _postgres() -> Any:
    from twinshot.gallery.stores.postgres import PostgresStore

    return PostgresStore


def _milvus() -> Any:
    from twinshot.gallery.stores.milvus import MilvusStore

    return MilvusStore


#: Store kinds by URI kind; each factory imports its client library only when used.
STORES: dict[str, Callable[[], Any]] = {"postgresql": _postgres, "milvus": _milvus, "milvus-lite": _milvus}


def _store_class(where: StoreURI) -> Any:
    try:
        return STORES[where.kind]()
    except KeyError:
        raise ConfigError(f"{where}: unknown store kind {where.kind!r}; valid: {', '.join(STORES)}") from None


def open_store(location: str | os.PathLike, *, readonly: bool = False) -> Store:
    """Open an existing gallery at ``location`` (a file path or a store URI)."""
    if is_uri(location):
        where = parse(str(location))
        return _store_class(where).open(where, readonly=readonly)
    from twinshot.gallery.store import GalleryStore

    return GalleryStore.open(location, readonly=readonly)


def create_store(location: str | os.PathLike, meta: dict[str, str], *, overwrite: bool = False) -> Store:
    """Create a new, empty gallery at ``location`` with settings ``meta`` (must hold ``dim``)."""
    if is_uri(location):
        where = parse(str(location))
        return _store_class(where).create(where, meta, overwrite=overwrite)
    from twinshot.gallery.store import GalleryStore

    return GalleryStore.create(location, meta, overwrite=overwrite)


__all__ = ["STORES", "Store", "StoreURI", "create_store", "is_uri", "open_store", "parse", "redact"]
