"""A gallery in Milvus (the ``pymilvus`` client): a Milvus server or cluster
(``milvus://HOST:PORT/C``), or a local Milvus Lite file (``milvus-lite:///path.db/C``).

Collections, for a gallery named ``C``:

* ``C_meta(key, value)``: the settings, as in the SQLite store, plus the id counters;
* ``C_identities(id, key, name, metadata, created, batches)``: ``key`` is the name's UTF-8
  in hex (filters never quote user text), ``batches`` the JSON list of the write batches
  whose rows belong to the identity;
* ``C_rows(id, identity_id, batch, vector)``: one row per reference (``id`` = image id);
* ``C_audit(id, identity_key, identity, record)``: the audit trail.

Milvus requires a vector field in every collection: the settings, identity and audit
collections carry a 2-d zero vector ``v`` that is never searched.

Milvus has no multi-collection transactions, so **the identity row is the commit**: an
enrollment first inserts its rows under a fresh batch number, flushes them, and then
upserts the identity rows listing that batch (replace: only that batch; add: the old
batches and that one). Readers see a row only when its batch is listed by its identity, so
a write that dies before the upsert leaves no visible reference; rows of a replaced batch
are deleted afterwards (left-overs of a crash are invisible, and counted by ``check``).
One identity's references therefore land together or not at all; an enrollment of several
identities upserts them in one request, which Milvus applies per row. The store assumes
**one writer at a time** (ids are reserved in ``C_meta``); any number of readers.

Kept images (``--keep-images``) are not supported: Milvus has no binary column; keep them
in a PostgreSQL or SQLite gallery.

Milvus Lite (what the tests run) is a Python re-implementation on faiss and pyarrow: it
keeps rows in a write buffer until ``flush()`` (the store flushes after every write),
silently drops index build parameters, and only one process may open a Lite file. Its
latency says nothing about a Milvus cluster's.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager, nullcontext
from typing import Any, Iterator, Sequence

import numpy as np

from twinshot.errors import ConfigError, ReadOnlyError, StorageError, TwinshotError
from twinshot.gallery.audit import AuditEntry, audit_record
from twinshot.gallery.names import load_stored_metadata
from twinshot.gallery.store import SCHEMA_VERSION, IdentityRecord, NewIdentity, Progress, StoredRows, WriteResult, now, stored_dim
from twinshot.gallery.stores.base import Nearest, already_enrolled, check_items, not_enrolled, sorted_rows
from twinshot.gallery.stores.uri import StoreURI, with_retries

#: Rows per insert / per query-iterator batch.
BATCH = 5_000
#: Largest ``in [...]`` list in one filter.
IN_CHUNK = 1_000
_TEXT = 65_535
_DUMMY = [0.0, 0.0]


class _NoLiteTimestampWarning(logging.Filter):
    """Milvus Lite gives query iterators no server timestamp and pymilvus warns on every
    full read; the client falls back to its own clock, which is what Lite wants."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to get mvccTs" not in record.getMessage()


logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(_NoLiteTimestampWarning())


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError:
        raise TwinshotError("Milvus galleries need pymilvus (and milvus-lite for local files): pip install 'twinshot[stores]'") from None
    return pymilvus


def name_key(name: str) -> str:
    """The identity name as hex of its UTF-8: safe inside a filter expression."""
    return name.encode("utf-8").hex()


def _ints(values: Sequence[int]) -> str:
    return "[" + ",".join(str(int(v)) for v in values) + "]"


class MilvusStore:
    """One gallery in Milvus. Open with :meth:`open`, create with :meth:`create` (or
    through :func:`twinshot.gallery.stores.open_store` with a ``milvus://`` or
    ``milvus-lite:`` URI)."""

    def __init__(self, client: Any, where: StoreURI, *, read_only: str | None = None) -> None:
        self.client = client
        self.where = where
        self.path = where.display
        #: what reopens this gallery (the URI as given, password included; print ``path``)
        self.location = where.raw or where.display
        self.c = where.name
        self.read_only = read_only
        self.last_audit_id: int | None = None
        for suffix in ("meta", "identities", "rows", "audit"):
            self.client.load_collection(f"{self.c}_{suffix}")  # a reopened collection must be loaded
        self.dim = stored_dim(self.meta(), self.path)

    # -- opening -----------------------------------------------------------------------

    @staticmethod
    def connect(where: StoreURI) -> Any:
        pymilvus = _pymilvus()
        if where.kind == "milvus-lite":
            try:
                return pymilvus.MilvusClient(where.target)
            except pymilvus.exceptions.MilvusException as exc:
                raise StorageError(
                    f"{where}: cannot open the Milvus Lite file ({' '.join(str(exc).split())[:200]}); only one process may "
                    f"open a Lite file: stop the other one, or serve the file with `milvus-lite server` and use milvus://"
                ) from None
        kwargs: dict[str, Any] = {"uri": where.target, "timeout": 10}
        if "token" in where.options:
            kwargs["token"] = where.options["token"]
        if "db" in where.options:
            kwargs["db_name"] = where.options["db"]
        return with_retries(
            lambda: pymilvus.MilvusClient(**kwargs), what=where.display, retry_on=(pymilvus.exceptions.MilvusException,)
        )

    @classmethod
    def create(cls, where: StoreURI, meta: dict[str, str], *, overwrite: bool = False) -> MilvusStore:
        if meta.get("keep_images") == "1":
            raise ConfigError(f"{where}: Milvus galleries cannot keep images (no binary column); use a PostgreSQL or SQLite gallery")
        pymilvus = _pymilvus()
        DataType = pymilvus.DataType
        client = cls.connect(where)
        c = where.name
        try:
            existing = set(client.list_collections())
            if f"{c}_meta" in existing and not overwrite:
                raise TwinshotError(f"{where}: already exists; choose another name or overwrite it (--force)")
            for suffix in ("meta", "identities", "rows", "audit"):
                if f"{c}_{suffix}" in existing:
                    client.drop_collection(f"{c}_{suffix}")
            consistency = where.options.get("consistency", "Strong")
            dim = int(meta["dim"])

            def make(suffix: str, fields: list[tuple[str, Any, dict[str, Any]]], vector: str, vdim: int, metric: str, index: str, params: dict[str, Any]) -> None:
                schema = pymilvus.MilvusClient.create_schema(auto_id=False)
                for fname, ftype, kw in fields:
                    schema.add_field(fname, ftype, **kw)
                schema.add_field(vector, DataType.FLOAT_VECTOR, dim=vdim)
                ip = client.prepare_index_params()
                ip.add_index(vector, index_type=index, metric_type=metric, params=params)
                client.create_collection(f"{c}_{suffix}", schema=schema, index_params=ip, consistency_level=consistency)

            # the meta collection is created last: its existence marks a complete gallery
            make("identities", [("id", DataType.INT64, {"is_primary": True}), ("key", DataType.VARCHAR, {"max_length": 1100}),
                                ("name", DataType.VARCHAR, {"max_length": 1024}), ("metadata", DataType.VARCHAR, {"max_length": _TEXT}),
                                ("created", DataType.VARCHAR, {"max_length": 64}), ("batches", DataType.VARCHAR, {"max_length": _TEXT})],
                 "v", 2, "L2", "FLAT", {})
            metric = _metric(meta)
            index = where.options.get("index", "HNSW").upper()
            params = {"M": int(where.options.get("m", 32)), "efConstruction": int(where.options.get("ef_construction", 64))} if index == "HNSW" else {}
            make("rows", [("id", DataType.INT64, {"is_primary": True}), ("identity_id", DataType.INT64, {}), ("batch", DataType.INT64, {})],
                 "vector", dim, metric, index, params)
            make("audit", [("id", DataType.INT64, {"is_primary": True}), ("identity_key", DataType.VARCHAR, {"max_length": 1100}),
                           ("identity", DataType.VARCHAR, {"max_length": 1024}), ("record", DataType.VARCHAR, {"max_length": _TEXT})],
                 "v", 2, "L2", "FLAT", {})
            full = {"schema_version": str(SCHEMA_VERSION), "generation": "0", "created": now(), "metric": metric, **meta}
            make("meta", [("key", DataType.VARCHAR, {"is_primary": True, "max_length": 256}), ("value", DataType.VARCHAR, {"max_length": _TEXT})],
                 "v", 2, "L2", "FLAT", {})
            client.upsert(f"{c}_meta", [{"key": k, "value": v, "v": _DUMMY} for k, v in sorted(full.items())])
            client.flush(f"{c}_meta")
            return cls(client, where)
        except BaseException as exc:
            client.close()
            if isinstance(exc, pymilvus.exceptions.MilvusException):
                raise _error(where, exc, "create") from None
            raise

    @classmethod
    def open(cls, where: StoreURI, *, readonly: bool = False) -> MilvusStore:
        pymilvus = _pymilvus()
        client = cls.connect(where)
        try:
            names = set(client.list_collections())
            if f"{where.name}_meta" not in names:
                raise TwinshotError(f"{where}: no such gallery; create it with `twinshot gallery create`")
            return cls(client, where, read_only="opened read-only" if readonly else None)
        except BaseException as exc:
            client.close()
            if isinstance(exc, pymilvus.exceptions.MilvusException):
                raise _error(where, exc, "open") from None
            raise

    def close(self) -> None:
        self.client.close()

    @contextmanager
    def _calls(self, doing: str) -> Iterator[None]:
        pymilvus = _pymilvus()
        try:
            yield
        except pymilvus.exceptions.MilvusException as exc:
            raise _error(self.where, exc, doing) from None

    def snapshot(self) -> Any:
        return nullcontext()

    # -- low-level ---------------------------------------------------------------------

    def _all(self, suffix: str, fields: list[str], filter: str = "") -> list[dict[str, Any]]:
        """Every row of a collection matching ``filter`` (a query iterator: no row limit)."""
        with self._calls("read"):
            it = self.client.query_iterator(f"{self.c}_{suffix}", batch_size=BATCH, filter=filter, output_fields=fields)
            out: list[dict[str, Any]] = []
            try:
                while True:
                    batch = it.next()
                    if not batch:
                        break
                    out.extend(batch)
            finally:
                it.close()
            return out

    def _flush(self, *suffixes: str) -> None:
        for s in suffixes:
            self.client.flush(f"{self.c}_{s}")

    def _identities(self, filter: str = "") -> list[dict[str, Any]]:
        return self._all("identities", ["id", "name", "metadata", "created", "batches"], filter)

    def _visible(self, rows: list[dict[str, Any]], identities: list[dict[str, Any]]) -> list[dict[str, Any]]:
        batches = {int(r["id"]): set(json.loads(r["batches"])) for r in identities}
        return [r for r in rows if int(r["batch"]) in batches.get(int(r["identity_id"]), ())]

    def _reserve(self, counter: str, n: int) -> int:
        """Reserve ``n`` consecutive ids of ``counter``; returns the first (one writer)."""
        first = int(self.meta().get(counter, "1"))
        self._upsert_meta({counter: str(first + n)})
        return first

    def _upsert_meta(self, updates: dict[str, str]) -> None:
        self.client.upsert(f"{self.c}_meta", [{"key": k, "value": v, "v": _DUMMY} for k, v in sorted(updates.items())])

    def _check_writable(self, audit: AuditEntry | None) -> None:
        if self.read_only is not None:
            what = f"{audit.action} " if audit is not None else ""
            raise ReadOnlyError(f"{self.path}: cannot {what or 'change '}the gallery: it is read-only here ({self.read_only})")

    def _commit(self, audit: AuditEntry | None, meta_updates: dict[str, str] | None = None) -> None:
        """Bump the generation, write settings and the audit record, flush everything."""
        updates = dict(meta_updates or {})
        updates["generation"] = str(self.generation() + 1)
        self._upsert_meta(updates)
        if audit is not None:
            self.last_audit_id = self._write_audit(audit)
        self._flush("rows", "identities", "meta", "audit")

    def _write_audit(self, entry: AuditEntry) -> int:
        from twinshot.gallery.audit import _now

        names: Sequence[str | None] = list(entry.identities) or [None]
        first = self._reserve("next_audit", len(names))
        time = _now()
        rows = [
            {
                "id": first + i, "identity_key": name_key(n) if n else "", "identity": n or "",
                "record": json.dumps({"time": time, "who": entry.actor.who, "client": entry.actor.client, "action": entry.action, "details": entry.details}, sort_keys=True),
                "v": _DUMMY,
            }
            for i, n in enumerate(names)
        ]
        self.client.insert(f"{self.c}_audit", rows)
        return first + len(names) - 1

    def _forget(self, name: str) -> str:
        import hashlib
        import secrets

        meta = self.meta()
        salt = meta.get("audit_salt") or secrets.token_hex(16)
        if "audit_salt" not in meta:
            self._upsert_meta({"audit_salt": salt})
        alias = "forgotten:" + hashlib.sha256((salt + "\0" + name).encode()).hexdigest()[:16]
        rows = self._all("audit", ["id", "identity_key", "identity", "record"], f'identity_key == "{name_key(name)}"')
        if rows:
            self.client.upsert(f"{self.c}_audit", [{**r, "identity_key": name_key(alias), "identity": alias, "v": _DUMMY} for r in rows])
        return alias

    # -- settings ----------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self._all("meta", ["key", "value"])}

    def generation(self) -> int:
        with self._calls("read"):
            rows = self.client.query(f"{self.c}_meta", filter='key == "generation"', output_fields=["value"])
        return int(rows[0]["value"]) if rows else 0

    def set_meta(self, updates: dict[str, str], *, audit: AuditEntry | None = None) -> None:
        self._check_writable(audit)
        with self._calls("write"):
            self._commit(audit, updates)

    # -- reading -----------------------------------------------------------------------

    def load_rows(self) -> StoredRows:
        identities = self._identities()
        rows = self._visible(self._all("rows", ["id", "identity_id", "batch", "vector"]), identities)
        if not rows:
            return StoredRows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32))
        ids = np.fromiter((r["id"] for r in rows), np.int64, len(rows))
        ident = np.fromiter((r["identity_id"] for r in rows), np.int64, len(rows))
        vectors = np.asarray([r["vector"] for r in rows], dtype=np.float32).reshape(len(rows), self.dim)
        return sorted_rows(ids, ident, vectors)

    def identity_id(self, name: str) -> int | None:
        rows = self._identities(f'key == "{name_key(name)}"')
        return int(rows[0]["id"]) if rows else None

    def identity_names(self, ids: Sequence[int]) -> dict[int, str]:
        wanted = sorted({int(i) for i in ids})
        out: dict[int, str] = {}
        for a in range(0, len(wanted), IN_CHUNK):
            out.update({int(r["id"]): r["name"] for r in self._identities(f"id in {_ints(wanted[a:a + IN_CHUNK])}")})
        return out

    def count_identities(self) -> int:
        with self._calls("read"):
            return int(self.client.query(f"{self.c}_identities", filter="", output_fields=["count(*)"])[0]["count(*)"])

    def list_identities(self) -> list[IdentityRecord]:
        identities = self._identities()
        rows = self._visible(self._all("rows", ["id", "identity_id", "batch"]), identities)
        counts: dict[int, int] = {}
        for r in rows:
            counts[int(r["identity_id"])] = counts.get(int(r["identity_id"]), 0) + 1
        out = []
        for r in sorted(identities, key=lambda r: r["name"]):
            metadata, problem = load_stored_metadata(r["metadata"])
            out.append(IdentityRecord(int(r["id"]), r["name"], metadata, counts.get(int(r["id"]), 0), r["created"], problem))
        return out

    def image_ids_of(self, identity_id: int) -> np.ndarray:
        identities = self._identities(f"id == {int(identity_id)}")
        rows = self._visible(self._all("rows", ["id", "identity_id", "batch"], f"identity_id == {int(identity_id)}"), identities)
        return np.array(sorted(int(r["id"]) for r in rows), dtype=np.int64)

    def images(self, image_ids: Sequence[int]) -> dict[int, bytes]:
        return {}

    def count_images(self) -> int:
        return 0

    def read_audit(self, after: int = 0) -> list[dict[str, Any]]:
        rows = sorted(self._all("audit", ["id", "identity", "record"], f"id > {int(after)}"), key=lambda r: r["id"])
        records = [(r, json.loads(r["record"])) for r in rows]
        return [audit_record(r["id"], rec["time"], rec["who"], rec["client"], rec["action"], r["identity"] or None, rec.get("details") or {}) for r, rec in records]

    # -- writing -----------------------------------------------------------------------

    def write_identities(
        self, items: Sequence[NewIdentity], *, on_exists: str = "error", progress: Progress | None = None, audit: AuditEntry | None = None
    ) -> WriteResult:
        """Enroll ``items``: rows first (invisible), then the identity rows that make them
        visible (see the module docstring)."""
        self._check_writable(audit)
        check_items(items, self.dim, on_exists)
        keys = [name_key(it.name) for it in items]
        created = now()
        with self._calls("write"):
            existing: dict[str, dict[str, Any]] = {}
            for a in range(0, len(keys), IN_CHUNK):
                chunk = ", ".join(f'"{k}"' for k in keys[a : a + IN_CHUNK])
                existing.update({name_key(r["name"]): r for r in self._identities(f"key in [{chunk}]")})
            old_rows: dict[int, np.ndarray] = {}
            if existing:
                ids = [int(r["id"]) for r in existing.values()]
                visible = self._visible(self._all("rows", ["id", "identity_id", "batch"], f"identity_id in {_ints(ids)}"), list(existing.values()))
                for i in ids:
                    old_rows[i] = np.array(sorted(int(r["id"]) for r in visible if int(r["identity_id"]) == i), dtype=np.int64)
            if existing and on_exists == "error":
                name = next(it.name for it, k in zip(items, keys) if k in existing)
                raise already_enrolled(name, int(old_rows[int(existing[name_key(name)]["id"])].size), len(existing))
            n_new = sum(1 for k in keys if k not in existing)
            counts = [it.vectors.shape[0] for it in items]
            batch = self._reserve("next_batch", 1)
            next_ident = self._reserve("next_identity", n_new) if n_new else 0
            first = self._reserve("next_image", sum(counts))
            identity_rows, identity_ids, new_identity, removed_counts, removed = [], [], [], [], []
            for it, k in zip(items, keys):
                old = existing.get(k)
                if old is None:
                    ident, batches, metadata, made = next_ident, [batch], json.dumps(it.metadata or {}), created
                    next_ident += 1
                else:
                    ident, made = int(old["id"]), old["created"]
                    metadata = old["metadata"] if it.metadata is None else json.dumps(it.metadata)
                    batches = [batch] if on_exists == "replace" else [*json.loads(old["batches"]), batch]
                    if on_exists == "replace":
                        removed.append(old_rows[ident])
                identity_rows.append({"id": ident, "key": k, "name": it.name, "metadata": metadata, "created": made, "batches": json.dumps(batches), "v": _DUMMY})
                identity_ids.append(ident)
                new_identity.append(old is None)
                removed_counts.append(int(old_rows[ident].size) if old is not None and on_exists == "replace" else 0)
            all_ids = np.arange(first, first + sum(counts), dtype=np.int64)
            all_ident = np.repeat(np.array(identity_ids, dtype=np.int64), counts)
            all_vec = np.concatenate([np.asarray(it.vectors, dtype=np.float32) for it in items])
            total = int(all_ids.size)
            for a in range(0, total, BATCH):
                stop = min(total, a + BATCH)
                self.client.insert(f"{self.c}_rows", [
                    {"id": i, "identity_id": d, "batch": batch, "vector": v}
                    for i, d, v in zip(all_ids[a:stop].tolist(), all_ident[a:stop].tolist(), all_vec[a:stop].tolist())
                ])
                if progress is not None:
                    progress("store", stop, total)
            self._flush("rows")
            self.client.upsert(f"{self.c}_identities", identity_rows)  # the commit: rows become visible
            self._commit(audit)
            replaced = [int(r["id"]) for k, r in existing.items() if on_exists == "replace"]
            if replaced:  # the replaced batches are invisible now; delete them
                self.client.delete(f"{self.c}_rows", filter=f"identity_id in {_ints(replaced)} and batch != {batch}")
                self._flush("rows")
        return WriteResult(
            identity_ids=identity_ids,
            image_ids=list(np.split(all_ids, np.cumsum(counts)[:-1])),
            removed_ids=np.concatenate(removed) if removed else np.zeros(0, dtype=np.int64),
            removed_counts=removed_counts,
            new_identity=new_identity,
        )

    def remove_identity(self, name: str, *, audit: AuditEntry | None = None) -> np.ndarray:
        self._check_writable(audit)
        with self._calls("write"):
            rows = self._identities(f'key == "{name_key(name)}"')
            if not rows:
                raise not_enrolled(name, self.path)
            ident = int(rows[0]["id"])
            old = self.image_ids_of(ident)
            self.client.delete(f"{self.c}_identities", filter=f"id == {ident}")  # the commit
            if audit is not None:
                audit.identities[:] = [self._forget(name)]
            self._commit(audit)
            self.client.delete(f"{self.c}_rows", filter=f"identity_id == {ident}")
            self._flush("rows")
        return old

    def rewrite_vectors(self, rows: StoredRows, meta_updates: dict[str, str], *, audit: AuditEntry | None = None) -> None:
        raise TwinshotError(f"{self.path}: Milvus galleries keep no images, so they cannot be re-embedded")

    # -- the database's own search -----------------------------------------------------

    def read_ann(self, kind: str) -> None:
        return None

    def write_ann(self, kind: str, ids: np.ndarray, data: bytes) -> None:
        return None

    def ann_index(self, scorer: Any, config: Any) -> MilvusIndex:
        return MilvusIndex(self, scorer, config)

    def nearest(self, queries: np.ndarray, n: int, *, ef_search: int = 64) -> np.ndarray:
        """Milvus's ``n`` nearest image ids per query (its index, its metric), int64 ``(Q, n)``."""
        out = np.full((len(queries), n), -1, np.int64)
        if len(queries) == 0:
            return out
        metric = self.meta().get("metric", "COSINE")
        with self._calls("search"):
            hits = self.client.search(
                f"{self.c}_rows", data=np.asarray(queries, np.float32).tolist(), limit=min(n, 16_384), output_fields=["id"],
                anns_field="vector", search_params={"metric_type": metric, "params": {"ef": max(ef_search, n)}},
            )
        for i, row in enumerate(hits):
            found = [int(h["id"]) for h in row]
            out[i, : len(found)] = found
        return out

    #: Milvus returns at most this many hits per query.
    max_candidates: int | None = 16_384

    @property
    def exact_search(self) -> bool:
        """Whether Milvus compares every row: only when the rows collection has a ``FLAT``
        index (create the gallery with ``?index=FLAT``); HNSW and the other indexes are
        approximate."""
        if not hasattr(self, "_index_type"):
            with self._calls("read"):
                info = self.client.describe_index(f"{self.c}_rows", "vector") or {}
            self._index_type = str(info.get("index_type", "")).upper()
        return self._index_type == "FLAT"

    def count_embeddings(self) -> int:
        """Visible rows (a crashed write's invisible left-overs are not counted)."""
        return len(self._visible(self._all("rows", ["id", "identity_id", "batch"]), self._identities()))

    def nearest_rows(self, queries: np.ndarray, n: int, kind: str, *, exact: bool, ef_search: int = 100) -> list[Nearest]:
        """Each query's ``n`` nearest visible rows by the collection's metric (at most
        :attr:`max_candidates`), nearest first, with their vectors; distances as cosine
        distance ``1 - cos`` (metric COSINE) or L2 distance (metric L2, which Milvus
        reports squared)."""
        metric = self.meta().get("metric", "COSINE")
        limit = min(int(n), self.max_candidates or int(n))
        with self._calls("search"):
            hits = self.client.search(
                f"{self.c}_rows", data=np.asarray(queries, np.float32).tolist(), limit=limit,
                output_fields=["id", "identity_id", "batch", "vector"], anns_field="vector",
                search_params={"metric_type": metric, "params": {} if exact else {"ef": max(ef_search, limit)}},
            )
        found = [[h.get("entity", h) | {"distance": h["distance"]} for h in row] for row in hits]
        idents = sorted({int(e["identity_id"]) for row in found for e in row})
        visible_of = {int(r["id"]): r for r in self._identities(f"id in {_ints(idents)}")} if idents else {}
        out = []
        for row in found:
            kept = self._visible(row, list(visible_of.values()))
            d = np.array([e["distance"] for e in kept], np.float64)
            d = 1.0 - d if metric == "COSINE" else np.sqrt(np.maximum(d, 0.0))
            rows = StoredRows(
                np.fromiter((int(e["id"]) for e in kept), np.int64, len(kept)),
                np.fromiter((int(e["identity_id"]) for e in kept), np.int64, len(kept)),
                np.asarray([e["vector"] for e in kept], np.float32).reshape(len(kept), self.dim),
            )
            out.append(Nearest(rows, d, len(row) < limit))
        return out

    def rows_of_identities(self, identity_ids: Sequence[int]) -> StoredRows:
        """Every visible row of the given identities, in image-id order."""
        wanted = sorted({int(i) for i in identity_ids})
        rows: list[dict[str, Any]] = []
        for a in range(0, len(wanted), IN_CHUNK):
            chunk = _ints(wanted[a : a + IN_CHUNK])
            rows += self._visible(self._all("rows", ["id", "identity_id", "batch", "vector"], f"identity_id in {chunk}"), self._identities(f"id in {chunk}"))
        ids = np.fromiter((r["id"] for r in rows), np.int64, len(rows))
        ident = np.fromiter((r["identity_id"] for r in rows), np.int64, len(rows))
        return sorted_rows(ids, ident, np.asarray([r["vector"] for r in rows], np.float32).reshape(len(rows), self.dim))

    # -- checking ----------------------------------------------------------------------

    def check(self) -> dict[str, int]:
        identities = self._identities()
        all_rows = self._all("rows", ["id", "identity_id", "batch"])
        visible = self._visible(all_rows, identities)
        used = {int(r["identity_id"]) for r in visible}
        empty = [r["name"] for r in identities if int(r["id"]) not in used]
        if empty:
            raise TwinshotError(f"{self.path}: {len(empty)} identities without any embedding (e.g. {empty[0]!r})")
        return {"identities": len(identities), "embeddings": len(visible), "images": 0, "invisible_rows": len(all_rows) - len(visible)}


class MilvusIndex:
    """Candidates from Milvus's own index, rescored exactly by the gallery."""

    kind = "milvus"

    def __init__(self, store: MilvusStore, scorer: Any, config: Any) -> None:
        metric = store.meta().get("metric")
        if (scorer.kind, metric) not in (("cosine", "COSINE"), ("euclidean", "L2")) or scorer.sign < 0:
            raise ConfigError("Milvus search needs the cosine or euclidean head the gallery was created for (scale >= 0); use index='exact'")
        self.store, self.config = store, config
        self.ids = np.zeros(0, np.int64)

    def build_now(self) -> dict[str, Any]:
        return {"kind": self.kind, "rows": self.store.count_embeddings(), "m": self.config.m}

    def sync(self, stored: np.ndarray, ids: np.ndarray) -> int:
        return 0

    def candidates(self, q: Any, n: int, ids: np.ndarray) -> np.ndarray:
        image_ids = self.store.nearest(q.raw, n, ef_search=self.config.ef_search)
        if ids.size == 0:
            return np.full(image_ids.shape, -1, np.int64)
        pos = np.clip(np.searchsorted(ids, image_ids), 0, ids.size - 1)
        return np.where((image_ids >= 0) & (ids[pos] == image_ids), pos, -1)


def _metric(meta: dict[str, str]) -> str:
    """The Milvus metric that ranks like the model's head (cosine: COSINE; else L2)."""
    try:
        head = json.loads(meta.get("model_spec") or "{}").get("head", "")
    except (ValueError, AttributeError):
        head = ""
    return "COSINE" if head == "cosine" else "L2"


def _error(where: StoreURI, exc: BaseException, doing: str) -> TwinshotError:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return StorageError(f"{where}: cannot {doing} the gallery ({text[:300]})")
