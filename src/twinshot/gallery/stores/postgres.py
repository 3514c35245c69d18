"""A gallery in PostgreSQL with the pgvector extension (psycopg 3).

Tables, for a gallery named ``T`` (``postgresql://.../DB/T``):

* ``T_meta(key, value)``: the same settings as the SQLite store (model fingerprint, spec,
  threshold, calibration, ``generation``...);
* ``T_identities(id, name UNIQUE, metadata, created)``;
* ``T_embeddings(id, identity_id, embedding vector(D), created)``: ``id`` is the image id
  (a sequence: strictly increasing, never reused);
* ``T_images(embedding_id, data bytea)``: kept reference images;
* ``T_audit(...)``: the audit trail, as in :mod:`twinshot.gallery.audit`.

Every change is one transaction that first locks the ``generation`` row (``SELECT ... FOR
UPDATE``), so writers are serialised and an enrollment's references land together or not
at all. Connecting is retried with backoff (safe: nothing was sent); a write is never
retried (its outcome would be unknown).

Search: by default the gallery loads the rows and scores them exactly in process (same
results as every store). With ``search="database"`` it never loads them: each query asks the
database for its nearest rows (:meth:`PostgresStore.nearest_rows`: exact ``ORDER BY
embedding <=> q LIMIT n``, or the HNSW index) and scores only those in process (see
:mod:`twinshot.gallery.search_db`). With ``index="hnsw"`` the candidates come from a pgvector HNSW index
(``vector_cosine_ops`` for cosine heads, ``vector_l2_ops`` for euclidean ones) and are
rescored exactly, like the faiss index of the SQLite store. :meth:`PostgresStore.nearest`
also runs the database's own exact search (``ORDER BY embedding <=> q`` with index scans
off), used to measure the HNSW index's recall.

Pitfall: psycopg 3 prepares a statement on the server after 5 executions and the prepared
plan keeps the planner settings of that moment (``enable_indexscan``, ``hnsw.ef_search``
changed later are ignored), so the connection is opened with ``prepare_threshold=None``.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from twinshot.errors import ConfigError, ReadOnlyError, StorageError, TwinshotError
from twinshot.gallery.audit import AuditEntry, audit_record
from twinshot.gallery.names import load_stored_metadata
from twinshot.gallery.store import SCHEMA_VERSION, IdentityRecord, NewIdentity, Progress, StoredRows, WriteResult, now, stored_dim
from twinshot.gallery.stores.base import Nearest, already_enrolled, check_items, not_enrolled, sorted_rows
from twinshot.gallery.stores.uri import StoreURI, with_retries

#: Rows sent per COPY batch / fetched per cursor batch.
BATCH = 20_000
#: pgvector's largest dimension for an HNSW index.
HNSW_MAX_DIM = 2000


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise TwinshotError("PostgreSQL galleries need psycopg 3: pip install 'twinshot[stores]'") from None
    return psycopg


def vector_text(v: np.ndarray) -> str:
    """pgvector's text form of one float32 vector (exact: every float32 round-trips)."""
    return "[" + ",".join(map(repr, np.asarray(v, np.float32).tolist())) + "]"


#: PostgreSQL's binary COPY stream: signature, flags, header extension; and its end.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def copy_tuples(ids: np.ndarray, vectors: np.ndarray, identity_ids: np.ndarray | None = None, created: str | None = None) -> bytes:
    """Binary COPY tuples ``(id int8, [identity_id int8,] embedding vector, [created text])``
    for ``n`` rows, built as one numpy structured array (pgvector's binary form: int16 dim,
    int16 unused, ``dim`` big-endian float32)."""
    n, dim = vectors.shape
    fields: list[tuple[Any, ...]] = [("nf", ">i2"), ("l_id", ">i4"), ("id", ">i8")]
    if identity_ids is not None:
        fields += [("l_ident", ">i4"), ("ident", ">i8")]
    fields += [("l_vec", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("vec", ">f4", (dim,))]
    stamp = (created or "").encode()
    if created is not None:
        fields += [("l_created", ">i4"), ("created", f"S{len(stamp)}")]
    out = np.zeros(n, dtype=np.dtype(fields))
    out["nf"] = 2 + (identity_ids is not None) + (created is not None)
    out["l_id"], out["id"] = 8, ids
    if identity_ids is not None:
        out["l_ident"], out["ident"] = 8, identity_ids
    out["l_vec"], out["dim"], out["vec"] = 4 + 4 * dim, dim, vectors
    if created is not None:
        out["l_created"], out["created"] = len(stamp), stamp
    return out.tobytes()


def _parse_send(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """``vector_send`` blobs (int16 dim, int16 unused, ``dim`` big-endian float32) -> ``(n, dim)``."""
    if not blobs:
        return np.zeros((0, dim), np.float32)
    raw = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), 4 + 4 * dim)
    return raw[:, 4:].copy().view(">f4").astype(np.float32).reshape(len(blobs), dim)


class PostgresStore:
    """One gallery in PostgreSQL + pgvector. Open with :meth:`open`, create with :meth:`create`
    (or through :func:`twinshot.gallery.stores.open_store` with a ``postgresql://`` URI)."""

    def __init__(self, conn: Any, where: StoreURI, *, read_only: str | None = None) -> None:
        self.conn = conn
        self.where = where
        self.path = where.display
        #: what reopens this gallery (the URI as given, password included; print ``path``)
        self.location = where.raw or where.display
        self.t = where.name
        self.read_only = read_only
        self.last_audit_id: int | None = None
        self._hold()
        self.dim = stored_dim(self.meta(), self.path)

    # -- opening -----------------------------------------------------------------------

    def _hold(self) -> None:
        """Take the gallery's shared session lock (a PostgreSQL advisory lock on its name),
        held while this connection is open: ``create --force`` takes it exclusively, so it
        refuses to drop a gallery that a server or another command has open."""
        self.conn.execute("SELECT pg_advisory_lock_shared(hashtext(%s))", (_lock_name(self.t),))

    @staticmethod
    def connect(where: StoreURI) -> Any:
        """A connection (autocommit, no server-side prepared statements), retried with
        backoff while the server cannot be reached."""
        psycopg = _psycopg()

        def go() -> Any:
            return psycopg.connect(where.target, autocommit=True, prepare_threshold=None, connect_timeout=10)

        return with_retries(go, what=where.display, retry_on=(psycopg.OperationalError,))

    @classmethod
    def _exists(cls, conn: Any, t: str) -> bool:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{t}_meta",)).fetchone()[0]

    @classmethod
    def create(cls, where: StoreURI, meta: dict[str, str], *, overwrite: bool = False) -> PostgresStore:
        """Create the gallery's tables in one transaction (``overwrite`` drops existing ones)."""
        dim = int(meta["dim"])
        conn = cls.connect(where)
        t = where.name
        try:
            psycopg = _psycopg()
            try:
                with conn.transaction():
                    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                    if cls._exists(conn, t):
                        if not overwrite:
                            raise TwinshotError(f"{where}: already exists; choose another name or overwrite it (--force)")
                        # transaction-level: released at commit, when the new tables exist
                        if not conn.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", (_lock_name(t),)).fetchone()[0]:
                            raise StorageError(
                                f"{where}: another process has this gallery open (a server or another command); "
                                f"stop it before overwriting the gallery with --force"
                            )
                        cls._drop(conn, t)
                    for stmt in _schema(t, dim):
                        conn.execute(stmt)
                    full = {"schema_version": str(SCHEMA_VERSION), "generation": "0", "created": now(), **meta}
                    with conn.cursor() as cur:
                        cur.executemany(f"INSERT INTO {t}_meta(key, value) VALUES (%s, %s)", sorted(full.items()))
            except psycopg.Error as exc:
                raise _error(where, exc, "create") from None
            return cls(conn, where)
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _drop(conn: Any, t: str) -> None:
        for suffix in ("images", "audit", "embeddings", "identities", "meta"):
            conn.execute(f"DROP TABLE IF EXISTS {t}_{suffix} CASCADE")

    @classmethod
    def open(cls, where: StoreURI, *, readonly: bool = False) -> PostgresStore:
        conn = cls.connect(where)
        try:
            if not cls._exists(conn, where.name):
                raise TwinshotError(f"{where}: no such gallery; create it with `twinshot gallery create`")
            version = conn.execute(f"SELECT value FROM {where.name}_meta WHERE key = 'schema_version'").fetchone()
            if version is None or not version[0].isdigit() or int(version[0]) > SCHEMA_VERSION:
                raise TwinshotError(f"{where}: gallery schema version {version[0] if version else '?'} is not supported; upgrade twinshot")
            return cls(conn, where, read_only="opened read-only" if readonly else None)
        except BaseException as exc:
            conn.close()
            psycopg = _psycopg()
            if isinstance(exc, psycopg.Error):
                raise _error(where, exc, "open") from None
            raise

    def close(self) -> None:
        self.conn.close()

    # -- transactions ------------------------------------------------------------------

    @contextmanager
    def transaction(self, audit: AuditEntry | None = None) -> Iterator[Any]:
        """One write transaction: locks the generation row (writers queue here), yields the
        connection, increments the generation and writes ``audit`` before committing."""
        if self.read_only is not None:
            what = f"{audit.action} " if audit is not None else ""
            raise ReadOnlyError(f"{self.path}: cannot {what or 'change '}the gallery: it is read-only here ({self.read_only})")
        psycopg = _psycopg()
        t = self.t
        try:
            with self.conn.transaction():
                self.conn.execute(f"SELECT value FROM {t}_meta WHERE key = 'generation' FOR UPDATE")
                yield self.conn
                self.conn.execute(f"UPDATE {t}_meta SET value = (value::bigint + 1)::text WHERE key = 'generation'")
                if audit is not None:
                    self.last_audit_id = self._write_audit(audit)
        except psycopg.Error as exc:
            raise _error(self.where, exc, "write") from None

    def _write_audit(self, entry: AuditEntry) -> int:
        from twinshot.gallery.audit import _now

        details = json.dumps(entry.details, sort_keys=True)
        names: Sequence[str | None] = list(entry.identities) or [None]
        with self.conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {self.t}_audit(time, who, client, action, identity, details) VALUES (%s, %s, %s, %s, %s, %s)",
                [(_now(), entry.actor.who, entry.actor.client, entry.action, n, details) for n in names],
            )
        return int(self.conn.execute(f"SELECT MAX(id) FROM {self.t}_audit").fetchone()[0])

    def _forget(self, name: str) -> str:
        import hashlib
        import secrets

        self.conn.execute(
            f"INSERT INTO {self.t}_meta(key, value) VALUES ('audit_salt', %s) ON CONFLICT (key) DO NOTHING", (secrets.token_hex(16),)
        )
        salt = self.conn.execute(f"SELECT value FROM {self.t}_meta WHERE key = 'audit_salt'").fetchone()[0]
        alias = "forgotten:" + hashlib.sha256((salt + "\0" + name).encode()).hexdigest()[:16]
        self.conn.execute(f"UPDATE {self.t}_audit SET identity = %s WHERE identity = %s", (alias, name))
        return alias

    def _read(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """A read, retried on a dropped connection (reads are safe to repeat)."""
        psycopg = _psycopg()
        try:
            return self.conn.execute(sql, params).fetchall()
        except psycopg.OperationalError:
            if not self.conn.closed and not self.conn.broken:
                raise
            self.conn = self.connect(self.where)
            self._hold()
            return self.conn.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            raise _error(self.where, exc, "read") from None

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside the block see one snapshot (a repeatable-read transaction)."""
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield

    # -- settings ----------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self._read(f"SELECT key, value FROM {self.t}_meta"))

    def generation(self) -> int:
        rows = self._read(f"SELECT value FROM {self.t}_meta WHERE key = 'generation'")
        return int(rows[0][0]) if rows else 0

    def set_meta(self, updates: dict[str, str], *, audit: AuditEntry | None = None) -> None:
        with self.transaction(audit) as conn:
            self._set_meta(conn, updates)

    def _set_meta(self, conn: Any, updates: dict[str, str]) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {self.t}_meta(key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                sorted(updates.items()),
            )

    # -- reading -----------------------------------------------------------------------

    def load_rows(self) -> StoredRows:
        """Every embedding in image-id order (binary ``vector_send``, parsed with numpy)."""
        ids, ident, vecs = [], [], []
        psycopg = _psycopg()
        try:
            with self._rows_cursor() as cur:
                cur.execute(f"SELECT id, identity_id, vector_send(embedding) FROM {self.t}_embeddings ORDER BY id")
                while True:
                    batch = cur.fetchmany(BATCH)
                    if not batch:
                        break
                    ids.append(np.fromiter((r[0] for r in batch), np.int64, len(batch)))
                    ident.append(np.fromiter((r[1] for r in batch), np.int64, len(batch)))
                    vecs.append(_parse_send([r[2] for r in batch], self.dim))
        except psycopg.Error as exc:
            raise _error(self.where, exc, "read") from None
        if not ids:
            return StoredRows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32))
        return sorted_rows(np.concatenate(ids), np.concatenate(ident), np.concatenate(vecs))

    @contextmanager
    def _rows_cursor(self) -> Iterator[Any]:
        """A server-side cursor (rows stream in batches) inside its own read transaction."""
        with self.conn.transaction():
            with self.conn.cursor(name="twinshot_rows") as cur:
                yield cur

    def identity_id(self, name: str) -> int | None:
        rows = self._read(f"SELECT id FROM {self.t}_identities WHERE name = %s", (name,))
        return int(rows[0][0]) if rows else None

    def identity_names(self, ids: Sequence[int]) -> dict[int, str]:
        wanted = sorted({int(i) for i in ids})
        return {int(i): n for i, n in self._read(f"SELECT id, name FROM {self.t}_identities WHERE id = ANY(%s)", (wanted,))}

    def count_identities(self) -> int:
        return int(self._read(f"SELECT COUNT(*) FROM {self.t}_identities")[0][0])

    def list_identities(self) -> list[IdentityRecord]:
        rows = self._read(
            f"SELECT i.id, i.name, i.metadata, i.created, COUNT(e.id) FROM {self.t}_identities i "
            f"LEFT JOIN {self.t}_embeddings e ON e.identity_id = i.id GROUP BY i.id ORDER BY i.name COLLATE \"C\""
        )
        out = []
        for r in rows:
            metadata, problem = load_stored_metadata(r[2])
            out.append(IdentityRecord(int(r[0]), str(r[1]), metadata, int(r[4]), str(r[3]), problem))
        return out

    def image_ids_of(self, identity_id: int) -> np.ndarray:
        rows = self._read(f"SELECT id FROM {self.t}_embeddings WHERE identity_id = %s ORDER BY id", (int(identity_id),))
        return np.array([r[0] for r in rows], dtype=np.int64)

    def images(self, image_ids: Sequence[int]) -> dict[int, bytes]:
        ids = [int(i) for i in image_ids]
        return {int(i): bytes(d) for i, d in self._read(f"SELECT embedding_id, data FROM {self.t}_images WHERE embedding_id = ANY(%s)", (ids,))}

    def count_images(self) -> int:
        return int(self._read(f"SELECT COUNT(*) FROM {self.t}_images")[0][0])

    def read_audit(self, after: int = 0) -> list[dict[str, Any]]:
        rows = self._read(
            f"SELECT id, time, who, client, action, identity, details FROM {self.t}_audit WHERE id > %s ORDER BY id", (int(after),)
        )
        return [audit_record(*r) for r in rows]

    # -- writing -----------------------------------------------------------------------

    def _copy_rows(self, conn: Any, ids: np.ndarray, identity_ids: np.ndarray, vectors: np.ndarray, created: str, progress: Progress | None) -> None:
        """Append rows with one binary ``COPY`` (the stream is built with numpy, no
        per-value Python formatting)."""
        total = int(ids.size)
        with conn.cursor() as cur:
            with cur.copy(f"COPY {self.t}_embeddings(id, identity_id, embedding, created) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(COPY_HEADER)
                for a in range(0, total, BATCH):
                    stop = min(total, a + BATCH)
                    copy.write(copy_tuples(ids[a:stop], vectors[a:stop], identity_ids[a:stop], created))
                    if progress is not None:
                        progress("store", stop, total)
                copy.write(COPY_TRAILER)

    def _new_ids(self, conn: Any, n: int) -> np.ndarray:
        rows = conn.execute(f"SELECT nextval('{self.t}_embeddings_id_seq') FROM generate_series(1, %s)", (n,)).fetchall()
        return np.sort(np.array([r[0] for r in rows], dtype=np.int64))

    def write_identities(
        self, items: Sequence[NewIdentity], *, on_exists: str = "error", progress: Progress | None = None, audit: AuditEntry | None = None
    ) -> WriteResult:
        """Enroll ``items`` in one transaction (see :meth:`GalleryStore.write_identities`)."""
        check_items(items, self.dim, on_exists)
        names = [it.name for it in items]
        created = now()
        t = self.t
        with self.transaction(audit) as conn:
            existing = {n: int(i) for n, i in conn.execute(f"SELECT name, id FROM {t}_identities WHERE name = ANY(%s)", (names,))}
            if existing and on_exists == "error":
                name = next(n for n in names if n in existing)
                n_refs = conn.execute(f"SELECT COUNT(*) FROM {t}_embeddings WHERE identity_id = %s", (existing[name],)).fetchone()[0]
                raise already_enrolled(name, int(n_refs), len(existing))
            fresh = [it for it in items if it.name not in existing]
            if fresh:  # every new identity in one statement
                rows = conn.execute(
                    f"INSERT INTO {t}_identities(name, metadata, created) "
                    f"SELECT n, m, %s FROM unnest(%s::text[], %s::text[]) AS u(n, m) RETURNING id, name",
                    (created, [it.name for it in fresh], ["{}" if it.metadata is None else json.dumps(it.metadata) for it in fresh]),
                ).fetchall()
                new_ids = {name: int(i) for i, name in rows}
            identity_ids: list[int] = []
            new_identity: list[bool] = []
            removed_counts: list[int] = []
            removed: list[np.ndarray] = []
            for it in items:
                if it.name not in existing:
                    identity_ids.append(new_ids[it.name])
                    new_identity.append(True)
                    removed_counts.append(0)
                    continue
                ident = existing[it.name]
                identity_ids.append(ident)
                new_identity.append(False)
                if it.metadata is not None:
                    conn.execute(f"UPDATE {t}_identities SET metadata = %s WHERE id = %s", (json.dumps(it.metadata), ident))
                if on_exists == "replace":
                    old = conn.execute(f"DELETE FROM {t}_embeddings WHERE identity_id = %s RETURNING id", (ident,)).fetchall()
                    old_ids = np.array(sorted(r[0] for r in old), dtype=np.int64)
                    removed.append(old_ids)
                    removed_counts.append(int(old_ids.size))
                else:
                    removed_counts.append(0)
            counts = [it.vectors.shape[0] for it in items]
            all_ids = self._new_ids(conn, sum(counts))
            all_ident = np.repeat(np.array(identity_ids, dtype=np.int64), counts)
            all_vec = np.concatenate([np.asarray(it.vectors, dtype=np.float32) for it in items])
            self._copy_rows(conn, all_ids, all_ident, all_vec, created, progress)
            image_ids = list(np.split(all_ids, np.cumsum(counts)[:-1]))
            image_rows = [
                (int(i), bytes(data))
                for it, ids in zip(items, image_ids)
                if it.images is not None
                for i, data in zip(ids.tolist(), it.images)
            ]
            if image_rows:
                with conn.cursor() as cur:
                    cur.executemany(f"INSERT INTO {t}_images(embedding_id, data) VALUES (%s, %s)", image_rows)
        return WriteResult(
            identity_ids=identity_ids,
            image_ids=image_ids,
            removed_ids=np.concatenate(removed) if removed else np.zeros(0, dtype=np.int64),
            removed_counts=removed_counts,
            new_identity=new_identity,
        )

    def remove_identity(self, name: str, *, audit: AuditEntry | None = None) -> np.ndarray:
        t = self.t
        with self.transaction(audit) as conn:
            row = conn.execute(f"SELECT id FROM {t}_identities WHERE name = %s", (name,)).fetchone()
            if row is None:
                raise not_enrolled(name, self.path)
            old = conn.execute(f"DELETE FROM {t}_embeddings WHERE identity_id = %s RETURNING id", (row[0],)).fetchall()
            conn.execute(f"DELETE FROM {t}_identities WHERE id = %s", (row[0],))
            if audit is not None:
                audit.identities[:] = [self._forget(name)]
        return np.array(sorted(r[0] for r in old), dtype=np.int64)

    def rewrite_vectors(self, rows: StoredRows, meta_updates: dict[str, str], *, audit: AuditEntry | None = None) -> None:
        """Replace every vector (same ids and identities), possibly of a new dimension."""
        t = self.t
        dim = int(rows.vectors.shape[1])
        with self.transaction(audit) as conn:
            conn.execute(f"DROP INDEX IF EXISTS {t}_hnsw_cosine")
            conn.execute(f"DROP INDEX IF EXISTS {t}_hnsw_l2")
            conn.execute(f"CREATE TEMP TABLE {t}_new (id bigint PRIMARY KEY, embedding vector({dim})) ON COMMIT DROP")
            with conn.cursor() as cur, cur.copy(f"COPY {t}_new(id, embedding) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(COPY_HEADER + copy_tuples(rows.ids, rows.vectors) + COPY_TRAILER)
            conn.execute(f"ALTER TABLE {t}_embeddings ALTER COLUMN embedding DROP NOT NULL")
            conn.execute(f"ALTER TABLE {t}_embeddings ALTER COLUMN embedding TYPE vector({dim}) USING NULL")
            conn.execute(f"UPDATE {t}_embeddings e SET embedding = n.embedding FROM {t}_new n WHERE e.id = n.id")
            conn.execute(f"ALTER TABLE {t}_embeddings ALTER COLUMN embedding SET NOT NULL")
            self._set_meta(conn, {**meta_updates, "dim": str(dim)})
        self.dim = dim

    # -- the database's own search -----------------------------------------------------

    def read_ann(self, kind: str) -> None:
        return None  # the HNSW index lives in the database (see ann_index)

    def write_ann(self, kind: str, ids: np.ndarray, data: bytes) -> None:
        return None

    def ann_index(self, scorer: Any, config: Any) -> PgVectorIndex:
        """The pgvector HNSW index as the gallery's candidate generator."""
        return PgVectorIndex(self, scorer, config)

    def _operator(self, kind: str) -> tuple[str, str]:
        if kind == "cosine":
            return "<=>", "vector_cosine_ops"
        if kind == "euclidean":
            return "<->", "vector_l2_ops"
        raise ConfigError("database search needs a cosine or euclidean head; use exact search (index='exact')")

    def ensure_hnsw(self, kind: str, m: int, ef_construction: int) -> str:
        """Create the HNSW index for the head ``kind`` if it does not exist; its name."""
        if self.dim > HNSW_MAX_DIM:
            raise ConfigError(f"pgvector's HNSW index takes at most {HNSW_MAX_DIM} dimensions; this gallery has {self.dim}")
        _, ops = self._operator(kind)
        name = f"{self.t}_hnsw_{'cosine' if kind == 'cosine' else 'l2'}"
        psycopg = _psycopg()
        try:
            self.conn.execute(
                f"CREATE INDEX IF NOT EXISTS {name} ON {self.t}_embeddings USING hnsw (embedding {ops}) "
                f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
            )
        except psycopg.Error as exc:
            raise _error(self.where, exc, "index") from None
        return name

    def nearest(self, queries: np.ndarray, n: int, kind: str, *, exact: bool, ef_search: int = 100) -> np.ndarray:
        """The database's ``n`` nearest image ids per query, int64 ``(Q, n)`` (``-1`` pads):
        the ids of :meth:`nearest_rows`."""
        out = np.full((len(queries), n), -1, np.int64)
        for i, found in enumerate(self.nearest_rows(queries, n, kind, exact=exact, ef_search=ef_search)):
            out[i, : found.rows.ids.size] = found.rows.ids
        return out

    #: ``ORDER BY embedding <op> q`` with index scans off compares every row: exact.
    exact_search = True
    max_candidates: int | None = None

    def count_embeddings(self) -> int:
        return int(self._read(f"SELECT COUNT(*) FROM {self.t}_embeddings")[0][0])

    def nearest_rows(self, queries: np.ndarray, n: int, kind: str, *, exact: bool, ef_search: int = 100) -> list[Nearest]:
        """Each query's ``n`` nearest rows with their vectors and pgvector distances
        (``<=>`` cosine distance, ``<->`` L2), nearest first (equal distances: lower id first).
        ``exact`` scans every row (index scans off); else the HNSW index with ``ef_search``
        (pgvector caps it at 1000) when it exists."""
        op, _ = self._operator(kind)
        psycopg = _psycopg()
        out = []
        try:
            with self.conn.transaction():
                if exact:
                    self.conn.execute("SET LOCAL enable_indexscan = off")
                else:
                    self.conn.execute(f"SET LOCAL hnsw.ef_search = {int(min(max(ef_search, 1), 1000))}")
                for q in np.asarray(queries, np.float32):
                    rows = self.conn.execute(
                        f"SELECT id, identity_id, vector_send(embedding), embedding {op} %(q)s::vector AS d FROM {self.t}_embeddings "
                        f"ORDER BY embedding {op} %(q)s::vector{', id' if exact else ''} LIMIT %(n)s",
                        {"q": vector_text(q), "n": int(n)},
                    ).fetchall()
                    out.append(Nearest(self._stored(rows), np.array([r[3] for r in rows], np.float64), len(rows) < n))
        except psycopg.Error as exc:
            raise _error(self.where, exc, "search") from None
        return out

    def rows_of_identities(self, identity_ids: Sequence[int]) -> StoredRows:
        """Every row of the given identities, in image-id order."""
        wanted = sorted({int(i) for i in identity_ids})
        rows = self._read(
            f"SELECT id, identity_id, vector_send(embedding) FROM {self.t}_embeddings WHERE identity_id = ANY(%s) ORDER BY id", (wanted,)
        )
        return self._stored(rows)

    def _stored(self, rows: Sequence[tuple[Any, ...]]) -> StoredRows:
        """``(id, identity_id, vector_send blob, ...)`` tuples -> :class:`StoredRows` (order kept)."""
        return StoredRows(
            np.fromiter((r[0] for r in rows), np.int64, len(rows)),
            np.fromiter((r[1] for r in rows), np.int64, len(rows)),
            _parse_send([r[2] for r in rows], self.dim),
        )

    # -- checking ----------------------------------------------------------------------

    def check(self) -> dict[str, int]:
        t = self.t
        n_ident = self.count_identities()
        n_emb = int(self._read(f"SELECT COUNT(*) FROM {t}_embeddings")[0][0])
        empty = int(self._read(f"SELECT COUNT(*) FROM {t}_identities i WHERE NOT EXISTS (SELECT 1 FROM {t}_embeddings e WHERE e.identity_id = i.id)")[0][0])
        if empty:
            raise TwinshotError(f"{self.path}: {empty} identities without any embedding")
        return {"identities": n_ident, "embeddings": n_emb, "images": self.count_images()}

    def scrub(self) -> None:
        """Reclaim the space of deleted rows (``VACUUM`` of the gallery's tables), on a
        connection of its own (``VACUUM`` cannot run inside another thread's transaction)."""
        conn = self.connect(self.where)
        try:
            for suffix in ("embeddings", "images", "identities", "audit"):
                conn.execute(f"VACUUM {self.t}_{suffix}")
        finally:
            conn.close()


class PgVectorIndex:
    """Candidates from pgvector's HNSW index, rescored exactly by the gallery (the same role
    as :class:`twinshot.gallery.index.HNSWIndex`); the index follows every write itself."""

    kind = "pgvector-hnsw"

    def __init__(self, store: PostgresStore, scorer: Any, config: Any) -> None:
        if scorer.kind not in ("cosine", "euclidean") or scorer.sign < 0:
            raise ConfigError("approximate search needs a cosine or euclidean head with scale >= 0; use index='exact'")
        self.store, self.scorer, self.config = store, scorer, config
        self.ids = np.zeros(0, np.int64)
        self._ready = False

    def build_now(self) -> dict[str, Any]:
        name = self.store.ensure_hnsw(self.scorer.kind, self.config.m, self.config.ef_construction)
        self._ready = True
        return {"kind": self.kind, "index": name, "rows": int(self.store._read(f"SELECT COUNT(*) FROM {self.store.t}_embeddings")[0][0]), "m": self.config.m}

    def sync(self, stored: np.ndarray, ids: np.ndarray) -> int:
        return 0

    def candidates(self, q: Any, n: int, ids: np.ndarray) -> np.ndarray:
        """Up to ``n`` candidate rows per query as positions into ``ids`` (sorted image ids)."""
        if not self._ready:
            self.build_now()
        image_ids = self.store.nearest(q.raw, n, self.scorer.kind, exact=False, ef_search=max(self.config.ef_search, n))
        if ids.size == 0:
            return np.full(image_ids.shape, -1, np.int64)
        pos = np.clip(np.searchsorted(ids, image_ids), 0, ids.size - 1)
        return np.where((image_ids >= 0) & (ids[pos] == image_ids), pos, -1)


def _lock_name(t: str) -> str:
    """The advisory lock key text of the gallery with table prefix ``t``."""
    return f"twinshot-gallery:{t}"


def _schema(t: str, dim: int) -> list[str]:
    return [
        f"CREATE TABLE {t}_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"CREATE TABLE {t}_identities (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, metadata TEXT NOT NULL DEFAULT '{{}}', created TEXT NOT NULL)",
        f"CREATE TABLE {t}_embeddings (id BIGSERIAL PRIMARY KEY, identity_id BIGINT NOT NULL REFERENCES {t}_identities(id), "
        f"embedding vector({dim}) NOT NULL, created TEXT NOT NULL)",
        f"CREATE INDEX {t}_embeddings_identity ON {t}_embeddings(identity_id)",
        f"CREATE TABLE {t}_images (embedding_id BIGINT PRIMARY KEY REFERENCES {t}_embeddings(id) ON DELETE CASCADE, data BYTEA NOT NULL)",
        f"CREATE TABLE {t}_audit (id BIGSERIAL PRIMARY KEY, time TEXT NOT NULL, who TEXT NOT NULL, client TEXT, action TEXT NOT NULL, "
        f"identity TEXT, details TEXT NOT NULL DEFAULT '{{}}')",
    ]


def _error(where: StoreURI, exc: BaseException, doing: str) -> TwinshotError:
    """A one-line error naming the (redacted) URI for a database failure."""
    if isinstance(exc, TwinshotError):
        return exc
    text = " ".join(str(exc).split()) or type(exc).__name__
    psycopg = _psycopg()
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return ReadOnlyError(f"{where}: cannot {doing} the gallery: permission denied ({text[:200]})")
    return StorageError(f"{where}: cannot {doing} the gallery ({text[:300]})")
