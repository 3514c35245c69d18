"""The SQLite file behind a gallery: identities, embeddings, kept images and settings.

One file, Python's :mod:`sqlite3` in WAL mode. Every change (an enrollment, a removal, a
calibration, a re-embedding) is **one transaction**: a crash or a ``kill -9`` in the
middle leaves the file exactly as it was before the change (SQLite discards the
uncommitted end of the write-ahead log when the file is next opened).

Tables (schema version :data:`SCHEMA_VERSION`):

* ``meta(key, value)``: the model fingerprint, spec and reference, the threshold, the
  calibration, the combination rule, whether images are kept, a ``generation`` counter
  that every change increments;
* ``identities(id, name UNIQUE, metadata JSON, created)``;
* ``embeddings(id, identity_id, block_id, created)``: one row per reference image; its
  ``id`` is the *image id* returned by search and is never reused;
* ``blocks(id, n, ids, identity_ids, vectors)``: the embedding vectors themselves, packed
  ``rows_per_block`` rows to a block as little-endian ``int64``/``float32`` blobs, so that
  opening a gallery of a million embeddings reads a few hundred blobs, not a million rows;
* ``images(embedding_id, data)``: the original encoded image of each reference, only
  when the gallery keeps images (needed by :meth:`Gallery.reembed`);
* ``ann_index(kind, generation, ids, n_chunks)`` and ``ann_chunks(kind, seq, data)``: a
  cached approximate-search index, split in chunks of :data:`ANN_CHUNK_BYTES` (SQLite
  refuses blobs over 1 GB).
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import quote

import numpy as np

from twinshot.errors import DamagedError, DataError, ReadOnlyError, StorageError, TwinshotError
from twinshot.gallery.audit import AUDIT_SCHEMA, AuditEntry, forget, write_audit
from twinshot.gallery.names import load_stored_metadata

#: Version of the table layout; a file with a newer version is refused.
SCHEMA_VERSION = 1
#: Target size of one block's vector blob (the rows per block follow from the dimension).
BLOCK_BYTES = 1 << 20
#: A cached approximate index is stored in chunks of this many bytes.
ANN_CHUNK_BYTES = 256 << 20
#: Rows written per ``executemany`` call (the store's progress granularity).
WRITE_CHUNK = 20_000

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE identities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    metadata TEXT NOT NULL DEFAULT '{}',
    created TEXT NOT NULL
);
CREATE TABLE blocks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    n INTEGER NOT NULL,
    ids BLOB NOT NULL,
    identity_ids BLOB NOT NULL,
    vectors BLOB NOT NULL
);
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    block_id INTEGER NOT NULL REFERENCES blocks(id),
    created TEXT NOT NULL
);
CREATE INDEX embeddings_identity ON embeddings(identity_id);
CREATE INDEX embeddings_block ON embeddings(block_id);
CREATE TABLE images (
    embedding_id INTEGER PRIMARY KEY REFERENCES embeddings(id),
    data BLOB NOT NULL
);
CREATE TABLE ann_index (
    kind TEXT PRIMARY KEY,
    generation INTEGER NOT NULL,
    ids BLOB NOT NULL,
    n_chunks INTEGER NOT NULL
);
CREATE TABLE ann_chunks (
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (kind, seq)
);
""" + AUDIT_SCHEMA + ";\n"

#: ``progress(stage, done, total)``: called as work advances (stage "store" here).
Progress = Callable[[str, int, int], None]


def now() -> str:
    """The current UTC time as an ISO 8601 string (seconds)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class StoredRows:
    """Every embedding of a gallery, in image-id order.

    Attributes:
        ids: int64 ``(N,)`` image ids (strictly increasing).
        identity_ids: int64 ``(N,)`` the identity (database id) of each row.
        vectors: float32 ``(N, D)`` the embeddings as the model produced them.
    """

    ids: np.ndarray
    identity_ids: np.ndarray
    vectors: np.ndarray


@dataclass(frozen=True)
class IdentityRecord:
    """One enrolled identity: its name, metadata, number of references and creation time."""

    id: int
    name: str
    metadata: dict[str, Any]
    references: int
    created: str
    #: why the stored metadata could not be read (then ``metadata`` is ``{}``), else None
    metadata_error: str | None = None


@dataclass(frozen=True)
class NewIdentity:
    """An identity to write: its name, metadata (None keeps existing metadata), its
    embeddings float32 ``(n, D)`` and, if images are kept, one encoded image per row."""

    name: str
    vectors: np.ndarray
    metadata: dict[str, Any] | None = None
    images: Sequence[bytes] | None = None


@dataclass(frozen=True)
class WriteResult:
    """What one enrollment transaction changed.

    Attributes:
        identity_ids: the database id of each written identity (in input order).
        image_ids: for each written identity, int64 ``(n,)`` ids of its new embeddings.
        removed_ids: int64 ids of embeddings deleted by ``replace``.
        removed_counts: for each written identity, how many of its references ``replace``
            deleted.
        new_identity: for each written identity, whether it did not exist before.
    """

    identity_ids: list[int]
    image_ids: list[np.ndarray]
    removed_ids: np.ndarray
    removed_counts: list[int]
    new_identity: list[bool]


def _uri(path: Path, mode: str, **extra: str) -> str:
    query = "&".join([f"mode={mode}", *(f"{k}={v}" for k, v in extra.items())])
    return f"file:{quote(str(path.absolute()))}?{query}"


def _connect(path: Path, *, readonly: bool = False, immutable: bool = False) -> sqlite3.Connection:
    """A connection to an **existing** file, through SQLite only (``mode=rw`` never creates
    the file; ``mode=ro`` never writes it). Nothing here opens the file with ``open()``: on
    POSIX, closing any other descriptor of a live database drops this process's locks, and
    another process may then delete the write-ahead log under it."""
    extra = {"immutable": "1"} if immutable else {}
    return sqlite3.connect(
        _uri(path, "ro" if readonly else "rw", **extra), uri=True, isolation_level=None, timeout=30.0, check_same_thread=False
    )


def _refuse_if_in_use(path: Path) -> None:
    """Refuse to replace a database that another process has open (a server, a running
    enrollment): replacing it would unlink its file and write-ahead log under that process,
    and every change it then confirmed would be lost. Every SQLite connection holds a shared
    lock on the file while it is open, so an exclusive lock is refused while one exists.
    Files that are not SQLite databases are not checked."""
    try:
        conn = _connect(path)
    except sqlite3.DatabaseError:
        return
    try:
        conn.execute("PRAGMA busy_timeout=0")
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc).lower() or "busy" in str(exc).lower():
            raise StorageError(
                f"{path}: another process has this gallery open (a server or another command); "
                f"stop it before overwriting the gallery with --force"
            ) from None
    except sqlite3.DatabaseError:  # not a database: nothing can have it open as one
        pass
    finally:
        conn.close()


def _writable(path: Path) -> str | None:
    """Why this process cannot write the gallery at ``path`` (None: it can). SQLite needs
    the file and its folder (for the ``-wal`` and ``-shm`` files)."""
    if not os.access(path, os.W_OK):
        return "the file is read-only"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return "its folder is not writable"
    return None


def storage_error(path: Path | str, exc: BaseException, doing: str = "use") -> TwinshotError:
    """A typed, one-line error for an SQLite or file-system failure on the gallery ``path``."""
    text = str(exc)
    low = text.lower()
    if isinstance(exc, TwinshotError):
        return exc
    if "readonly" in low or "read-only" in low or isinstance(exc, PermissionError):
        return ReadOnlyError(f"{path}: cannot {doing} it: the gallery is read-only here ({text})")
    if "locked" in low or "busy" in low:
        return StorageError(f"{path}: cannot {doing} it: another process holds the gallery locked ({text}); try again")
    if "malformed" in low or "not a database" in low or "corrupt" in low:
        return DamagedError(f"{path}: the gallery file is damaged ({text}); run `twinshot gallery check {path}`")
    if "full" in low:
        return StorageError(f"{path}: cannot {doing} it: the disk is full ({text})")
    return StorageError(f"{path}: cannot {doing} it ({text})")


def _pack_ids(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<i8").tobytes()


def _pack_vectors(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<f4").tobytes()



def stored_dim(meta: dict[str, str], where: Any) -> int:
    """The embedding dimension recorded in a gallery's settings; DamagedError naming
    ``where`` when it is missing or out of range (any store)."""
    try:
        dim = int(meta["dim"])
        if not 1 <= dim <= 1 << 16:
            raise ValueError(dim)
    except (KeyError, ValueError):
        raise DamagedError(f"{where}: not a usable twinshot gallery (its dimension setting is missing or damaged)") from None
    return dim


class GalleryStore:
    """Reads and writes one gallery file. Not for direct use: see :class:`Gallery`.

    Args:
        conn: an open connection (WAL mode, autocommit; transactions are explicit).
        path: the file.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, *, read_only: str | None = None) -> None:
        self.conn = conn
        self.path = path
        #: Why this store cannot be written (None: it can); writes raise ReadOnlyError.
        self.read_only = read_only
        #: The id of the last audit row this store wrote (see :mod:`twinshot.gallery.audit`).
        self.last_audit_id: int | None = None
        self.dim = stored_dim(self.meta(), path)
        self.rows_per_block = max(1, BLOCK_BYTES // (4 * self.dim))

    # -- opening ----------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, meta: dict[str, str], *, overwrite: bool = False) -> GalleryStore:
        """Create a new gallery file with ``meta`` (must hold ``dim``). The file is built
        under a temporary name and renamed into place, so no half-made gallery is left."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise TwinshotError(f"{path}: already exists; choose another name or overwrite it (--force)")
        if path.is_dir():
            raise TwinshotError(f"{path}: is a folder, not a gallery file")
        if path.exists():
            _refuse_if_in_use(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        except OSError as exc:
            raise StorageError(f"{path}: cannot create the gallery there ({exc.strerror or exc})") from None
        os.close(fd)
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("BEGIN")
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                full = {"schema_version": str(SCHEMA_VERSION), "generation": "0", "created": now(), **meta}
                conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", sorted(full.items()))
                conn.execute("COMMIT")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
            for suffix in ("-wal", "-shm"):
                Path(path.as_posix() + suffix).unlink(missing_ok=True)
            os.replace(tmp, path)
        except BaseException as exc:
            for suffix in ("", "-wal", "-shm"):
                Path(tmp + suffix).unlink(missing_ok=True)
            if isinstance(exc, (OSError, sqlite3.DatabaseError)):
                raise storage_error(path, exc, "create") from None
            raise
        for suffix in ("-wal", "-shm"):
            Path(tmp + suffix).unlink(missing_ok=True)
        return cls.open(path)

    @classmethod
    def open(cls, path: str | os.PathLike, *, readonly: bool = False) -> GalleryStore:
        """Open an existing gallery file; refuse anything that is not one.

        Everything goes through SQLite (see :func:`_connect`): the file is never created,
        and with ``readonly`` never written. A gallery this process cannot write (a
        read-only file or folder) is opened read-only; its writes raise
        :class:`~twinshot.errors.ReadOnlyError` naming the reason.
        """
        path = Path(path)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise TwinshotError(f"{path}: no such gallery; create it with `twinshot gallery create`") from None
        except OSError as exc:
            raise StorageError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        if path.is_dir():
            raise TwinshotError(f"{path}: is a folder, not a gallery file")
        if not path.is_file():
            raise TwinshotError(f"{path}: not a gallery file")
        if st.st_size == 0:
            raise TwinshotError(f"{path}: not a twinshot gallery (an empty file)")
        if not os.access(path, os.R_OK):
            raise StorageError(f"{path}: cannot read it (permission denied)")
        reason = "opened read-only" if readonly else _writable(path)
        conn = None
        try:
            try:
                conn = _connect(path, readonly=reason is not None)
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            except sqlite3.OperationalError as exc:
                # a read-only WAL gallery in a folder we cannot write, with no -shm to share:
                # nobody can be writing it, so read it as an immutable file
                if conn is not None:
                    conn.close()
                if reason is None or Path(f"{path}-wal").exists() or "unable to open" not in str(exc):
                    raise
                conn = _connect(path, readonly=True, immutable=True)
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            if "not a database" in str(exc):
                raise TwinshotError(f"{path}: not a twinshot gallery (not an SQLite file)") from None
            raise storage_error(path, exc, "open") from None
        try:
            if not {"meta", "identities", "embeddings", "blocks"} <= tables:
                raise TwinshotError(f"{path}: not a twinshot gallery (its tables are missing)")
            version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            try:
                newer = version is None or int(version[0]) > SCHEMA_VERSION
            except ValueError:
                newer = True
            if newer:
                raise TwinshotError(
                    f"{path}: gallery schema version {version[0] if version else '?'} is newer than this "
                    f"twinshot supports ({SCHEMA_VERSION}); upgrade twinshot"
                )
            if reason is None:  # only now that it is known to be a gallery
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
            else:
                conn.execute("PRAGMA query_only=ON")
            return cls(conn, path, read_only=reason)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise storage_error(path, exc, "open") from None
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        self.conn.close()

    # -- transactions -----------------------------------------------------------------

    @contextmanager
    def transaction(self, audit: "AuditEntry | None" = None) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``): committed when the block ends,
        rolled back on any exception. Increments the ``generation`` counter, and writes
        ``audit`` (what changed, by whom) into the ``audit`` table **in the same
        transaction**, so a change and its record are committed together or not at all.

        Raises:
            ReadOnlyError: the gallery cannot be written here.
            StorageError: SQLite or the disk refused (locked, full, failing).
        """
        if self.read_only is not None:
            what = f"{audit.action} " if audit is not None else ""
            raise ReadOnlyError(f"{self.path}: cannot {what or 'change '}the gallery: it is read-only here ({self.read_only})")
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise storage_error(self.path, exc, "write") from None
        try:
            yield conn
            conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            if audit is not None:
                self.last_audit_id = write_audit(conn, audit)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.DatabaseError:
                    pass
            if isinstance(exc, sqlite3.DatabaseError):
                raise storage_error(self.path, exc, "write") from None
            raise

    # -- settings ---------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta"))

    def generation(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    def set_meta(self, updates: dict[str, str], *, conn: sqlite3.Connection | None = None, audit: AuditEntry | None = None) -> None:
        """Write settings; in their own transaction (recording ``audit``) unless ``conn``
        (an open one) is given."""
        if conn is None:
            with self.transaction(audit) as c:
                self.set_meta(updates, conn=c)
            return
        conn.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            sorted(updates.items()),
        )

    # -- reading ----------------------------------------------------------------------

    def load_rows(self) -> StoredRows:
        """Every embedding, in image-id order: one ``SELECT`` of the blocks, copied into
        one contiguous float32 ``(N, D)`` array."""
        blocks = self.conn.execute("SELECT n, ids, identity_ids, vectors FROM blocks").fetchall()
        if any(not isinstance(b[0], int) or b[0] < 0 for b in blocks):
            raise self.damaged("an embedding block has a negative or non-numeric size")
        total = sum(b[0] for b in blocks)
        ids = np.empty(total, dtype=np.int64)
        identity_ids = np.empty(total, dtype=np.int64)
        vectors = np.empty((total, self.dim), dtype=np.float32)
        at = 0
        for n, bids, bident, bvec in blocks:
            self._check_block(n, bids, bident, bvec)
            ids[at : at + n] = np.frombuffer(bids, dtype="<i8")
            identity_ids[at : at + n] = np.frombuffer(bident, dtype="<i8")
            vectors[at : at + n] = np.frombuffer(bvec, dtype="<f4").reshape(n, self.dim)
            at += n
        if total > 1 and not np.all(ids[1:] > ids[:-1]):
            order = np.argsort(ids, kind="stable")
            ids, identity_ids, vectors = ids[order], identity_ids[order], vectors[order]
        return StoredRows(ids=ids, identity_ids=identity_ids, vectors=vectors)

    def damaged(self, what: str) -> DamagedError:
        return DamagedError(f"{self.path}: the gallery is damaged ({what}); run `twinshot gallery check {self.path}`")

    def _check_block(self, n: int, bids: Any, bident: Any, bvec: Any) -> None:
        """Refuse a block whose blobs do not hold ``n`` ids, identities and vectors."""
        blobs = (bids, bident, bvec)
        if not isinstance(n, int) or n < 0:
            raise self.damaged(f"an embedding block has the size {n!r}")
        if not all(isinstance(b, bytes) for b in blobs):
            raise self.damaged("an embedding block holds a value that is not a blob")
        if len(bids) != 8 * n or len(bident) != 8 * n or len(bvec) != 4 * n * self.dim:
            raise self.damaged(
                f"an embedding block of {n} rows holds {len(bids)} id bytes and {len(bvec)} vector bytes "
                f"(expected {8 * n} and {4 * n * self.dim})"
            )

    def identity_id(self, name: str) -> int | None:
        row = self.conn.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else None

    def identity_names(self, ids: Sequence[int]) -> dict[int, str]:
        """Names of the identities with database ids ``ids``."""
        out: dict[int, str] = {}
        ids = sorted({int(i) for i in ids})
        for k in range(0, len(ids), 900):
            chunk = ids[k : k + 900]
            marks = ",".join("?" * len(chunk))
            out.update(self.conn.execute(f"SELECT id, name FROM identities WHERE id IN ({marks})", chunk))
        return out

    def count_identities(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM identities").fetchone()[0])

    def list_identities(self) -> list[IdentityRecord]:
        rows = self.conn.execute(
            "SELECT i.id, i.name, i.metadata, i.created, COUNT(e.id) FROM identities i "
            "LEFT JOIN embeddings e ON e.identity_id = i.id GROUP BY i.id ORDER BY i.name"
        ).fetchall()
        out = []
        for r in rows:
            metadata, problem = load_stored_metadata(r[2])
            out.append(IdentityRecord(int(r[0]), str(r[1]), metadata, int(r[4]), str(r[3]), problem))
        return out

    def image_ids_of(self, identity_id: int) -> np.ndarray:
        rows = self.conn.execute("SELECT id FROM embeddings WHERE identity_id = ? ORDER BY id", (identity_id,))
        return np.array([r[0] for r in rows], dtype=np.int64)

    def images(self, image_ids: Sequence[int]) -> dict[int, bytes]:
        """The kept images of embeddings ``image_ids`` (those without one are absent)."""
        out: dict[int, bytes] = {}
        ids = [int(i) for i in image_ids]
        for k in range(0, len(ids), 900):
            chunk = ids[k : k + 900]
            marks = ",".join("?" * len(chunk))
            out.update(self.conn.execute(f"SELECT embedding_id, data FROM images WHERE embedding_id IN ({marks})", chunk))
        return out

    def count_images(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    def read_audit(self, after: int = 0) -> list[dict[str, Any]]:
        """The audit rows with ids above ``after``, oldest first."""
        from twinshot.gallery.audit import read_audit

        return read_audit(self.conn, after=after)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside the block see one snapshot of the file (WAL), while writers go on."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("ROLLBACK")

    # -- writing ----------------------------------------------------------------------

    def _next_id(self, conn: sqlite3.Connection, table: str) -> int:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        return (int(row[0]) if row else 0) + 1

    def _delete_rows(self, conn: sqlite3.Connection, image_ids: np.ndarray) -> None:
        """Delete embeddings ``image_ids`` (and their images), rewriting their blocks."""
        if image_ids.size == 0:
            return
        kill = set(int(i) for i in image_ids)
        block_ids: set[int] = set()
        ids = [int(i) for i in image_ids]
        for k in range(0, len(ids), 900):
            chunk = ids[k : k + 900]
            marks = ",".join("?" * len(chunk))
            block_ids.update(r[0] for r in conn.execute(f"SELECT DISTINCT block_id FROM embeddings WHERE id IN ({marks})", chunk))
            conn.execute(f"DELETE FROM images WHERE embedding_id IN ({marks})", chunk)
            conn.execute(f"DELETE FROM embeddings WHERE id IN ({marks})", chunk)
        kill_arr = np.fromiter(kill, dtype=np.int64, count=len(kill))
        for block_id in sorted(block_ids):
            n, bids, bident, bvec = conn.execute(
                "SELECT n, ids, identity_ids, vectors FROM blocks WHERE id = ?", (block_id,)
            ).fetchone()
            self._check_block(n, bids, bident, bvec)
            a_ids = np.frombuffer(bids, dtype="<i8")
            keep = ~np.isin(a_ids, kill_arr)
            if not keep.any():
                conn.execute("DELETE FROM blocks WHERE id = ?", (block_id,))
                continue
            a_ident = np.frombuffer(bident, dtype="<i8")[keep]
            a_vec = np.frombuffer(bvec, dtype="<f4").reshape(n, self.dim)[keep]
            conn.execute(
                "UPDATE blocks SET n = ?, ids = ?, identity_ids = ?, vectors = ? WHERE id = ?",
                (int(keep.sum()), _pack_ids(a_ids[keep]), _pack_ids(a_ident), _pack_vectors(a_vec), block_id),
            )

    def _append_rows(
        self,
        conn: sqlite3.Connection,
        ids: np.ndarray,
        identity_ids: np.ndarray,
        vectors: np.ndarray,
        created: str,
        progress: Progress | None,
    ) -> None:
        """Append rows: top up the last block, then new blocks; then the embeddings rows."""
        total = ids.size
        block_of = np.empty(total, dtype=np.int64)
        at = 0
        last = conn.execute("SELECT id, n, ids, identity_ids, vectors FROM blocks ORDER BY id DESC LIMIT 1").fetchone()
        if last is not None:
            self._check_block(*last[1:])
        if last is not None and last[1] < self.rows_per_block:
            block_id, n = int(last[0]), int(last[1])
            take = min(total, self.rows_per_block - n)
            conn.execute(
                "UPDATE blocks SET n = ?, ids = ?, identity_ids = ?, vectors = ? WHERE id = ?",
                (
                    n + take,
                    last[2] + _pack_ids(ids[:take]),
                    last[3] + _pack_ids(identity_ids[:take]),
                    last[4] + _pack_vectors(vectors[:take]),
                    block_id,
                ),
            )
            block_of[:take] = block_id
            at = take
        next_block = self._next_id(conn, "blocks")
        while at < total:
            stop = min(total, at + self.rows_per_block)
            conn.execute(
                "INSERT INTO blocks(id, n, ids, identity_ids, vectors) VALUES (?, ?, ?, ?, ?)",
                (next_block, stop - at, _pack_ids(ids[at:stop]), _pack_ids(identity_ids[at:stop]), _pack_vectors(vectors[at:stop])),
            )
            block_of[at:stop] = next_block
            next_block += 1
            at = stop
        for k in range(0, total, WRITE_CHUNK):
            stop = min(total, k + WRITE_CHUNK)
            conn.executemany(
                "INSERT INTO embeddings(id, identity_id, block_id, created) VALUES (?, ?, ?, ?)",
                zip(ids[k:stop].tolist(), identity_ids[k:stop].tolist(), block_of[k:stop].tolist(), [created] * (stop - k)),
            )
            if progress is not None:
                progress("store", stop, total)

    def write_identities(
        self,
        items: Sequence[NewIdentity],
        *,
        on_exists: str = "error",
        progress: Progress | None = None,
        audit: AuditEntry | None = None,
    ) -> WriteResult:
        """Enroll ``items`` in **one** transaction.

        Args:
            items: identities with their embeddings (and images when kept).
            on_exists: what to do with a name already enrolled: ``"error"`` (refuse the
                whole write), ``"replace"`` (delete its references first) or ``"add"``
                (keep its references and add these).
            progress: called with ``("store", rows written, total rows)``.
            audit: the record of this change, written in its transaction.

        Raises:
            TwinshotError: a name already enrolled with ``on_exists="error"``, a name given
                twice, vectors of the wrong dimension; nothing is written then.
        """
        from twinshot.gallery.stores.base import already_enrolled, check_items

        check_items(items, self.dim, on_exists)
        names = [it.name for it in items]
        created = now()
        with self.transaction(audit) as conn:
            existing: dict[str, int] = {}
            for k in range(0, len(names), 900):  # look every name up at once
                chunk = names[k : k + 900]
                marks = ",".join("?" * len(chunk))
                existing.update(conn.execute(f"SELECT name, id FROM identities WHERE name IN ({marks})", chunk))
            if existing and on_exists == "error":
                name = next(n for n in names if n in existing)
                n_refs = conn.execute("SELECT COUNT(*) FROM embeddings WHERE identity_id = ?", (existing[name],)).fetchone()[0]
                raise already_enrolled(name, n_refs, len(existing))
            identity_ids: list[int] = []
            new_identity: list[bool] = []
            removed_counts: list[int] = []
            new_rows: list[tuple[int, str, str, str]] = []
            old_refs: dict[int, np.ndarray] = {}
            next_identity = self._next_id(conn, "identities")
            for it in items:
                if it.name not in existing:
                    new_rows.append((next_identity, it.name, "{}" if it.metadata is None else json.dumps(it.metadata), created))
                    identity_ids.append(next_identity)
                    new_identity.append(True)
                    removed_counts.append(0)
                    next_identity += 1
                    continue
                ident = int(existing[it.name])
                identity_ids.append(ident)
                new_identity.append(False)
                if it.metadata is not None:
                    conn.execute("UPDATE identities SET metadata = ? WHERE id = ?", (json.dumps(it.metadata), ident))
                if on_exists == "replace":
                    old_refs[ident] = np.array(
                        [r[0] for r in conn.execute("SELECT id FROM embeddings WHERE identity_id = ?", (ident,))],
                        dtype=np.int64,
                    )
                removed_counts.append(int(old_refs[ident].size) if ident in old_refs else 0)
            conn.executemany("INSERT INTO identities(id, name, metadata, created) VALUES (?, ?, ?, ?)", new_rows)
            removed = list(old_refs.values())
            if removed:
                self._delete_rows(conn, np.concatenate(removed))
            counts = [it.vectors.shape[0] for it in items]
            first = self._next_id(conn, "embeddings")
            all_ids = np.arange(first, first + sum(counts), dtype=np.int64)
            all_ident = np.repeat(np.array(identity_ids, dtype=np.int64), counts)
            all_vec = np.concatenate([np.asarray(it.vectors, dtype=np.float32) for it in items])
            self._append_rows(conn, all_ids, all_ident, all_vec, created, progress)
            image_ids = list(np.split(all_ids, np.cumsum(counts)[:-1]))
            image_rows = [
                (int(i), sqlite3.Binary(data))
                for it, ids in zip(items, image_ids)
                if it.images is not None
                for i, data in zip(ids.tolist(), it.images)
            ]
            if image_rows:
                conn.executemany("INSERT INTO images(embedding_id, data) VALUES (?, ?)", image_rows)
        return WriteResult(
            identity_ids=identity_ids,
            image_ids=image_ids,
            removed_ids=np.concatenate(removed) if removed else np.zeros(0, dtype=np.int64),
            removed_counts=removed_counts,
            new_identity=new_identity,
        )

    def remove_identity(self, name: str, *, audit: AuditEntry | None = None) -> np.ndarray:
        """Remove an identity and its references in one transaction (recording ``audit``
        in it); returns the removed image ids. Raises TwinshotError when ``name`` is not
        enrolled."""
        with self.transaction(audit) as conn:
            row = conn.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise TwinshotError(f"identity {name!r} is not enrolled in {self.path}")
            old = np.array(
                [r[0] for r in conn.execute("SELECT id FROM embeddings WHERE identity_id = ?", (row[0],))], dtype=np.int64
            )
            self._delete_rows(conn, old)
            conn.execute("DELETE FROM identities WHERE id = ?", (row[0],))
            if audit is not None:  # the name leaves the file with the identity
                audit.identities[:] = [forget(conn, name)]
        return old

    def rewrite_vectors(self, rows: StoredRows, meta_updates: dict[str, str], *, audit: AuditEntry | None = None) -> None:
        """Replace every vector (same ids, same identities) and update settings, in one
        transaction (used by re-embedding)."""
        with self.transaction(audit) as conn:
            conn.execute("PRAGMA defer_foreign_keys = ON")  # embeddings point at new blocks by commit
            conn.execute("DELETE FROM blocks")
            conn.execute("DELETE FROM ann_index")
            conn.execute("DELETE FROM ann_chunks")
            if meta_updates:
                self.set_meta(meta_updates, conn=conn)
            dim = rows.vectors.shape[1]
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('dim', ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (str(dim),),
            )
            per_block = max(1, BLOCK_BYTES // (4 * dim))
            next_block = self._next_id(conn, "blocks")
            updates: list[tuple[int, int]] = []
            for at in range(0, rows.ids.size, per_block):
                stop = min(rows.ids.size, at + per_block)
                conn.execute(
                    "INSERT INTO blocks(id, n, ids, identity_ids, vectors) VALUES (?, ?, ?, ?, ?)",
                    (
                        next_block,
                        stop - at,
                        _pack_ids(rows.ids[at:stop]),
                        _pack_ids(rows.identity_ids[at:stop]),
                        _pack_vectors(rows.vectors[at:stop]),
                    ),
                )
                updates.extend((next_block, int(i)) for i in rows.ids[at:stop])
                next_block += 1
            conn.executemany("UPDATE embeddings SET block_id = ? WHERE id = ?", updates)
        self.dim = rows.vectors.shape[1]
        self.rows_per_block = max(1, BLOCK_BYTES // (4 * self.dim))

    # -- the approximate index cache ----------------------------------------------------

    def read_ann(self, kind: str) -> tuple[int, np.ndarray, bytes] | None:
        """``(generation, image ids, serialised index)`` of the cached index, or None."""
        row = self.conn.execute("SELECT generation, ids, n_chunks FROM ann_index WHERE kind = ?", (kind,)).fetchone()
        if row is None:
            return None
        chunks = [r[0] for r in self.conn.execute("SELECT data FROM ann_chunks WHERE kind = ? ORDER BY seq", (kind,))]
        if len(chunks) != row[2]:
            return None  # incomplete: rebuild
        return int(row[0]), np.frombuffer(row[1], dtype="<i8").copy(), b"".join(chunks)

    def write_ann(self, kind: str, ids: np.ndarray, data: bytes) -> None:
        """Store a serialised index covering image ids ``ids``, in one transaction (it does
        not count as a change of the gallery's contents: the generation stays)."""
        if self.read_only is not None:
            return  # a cache: a read-only gallery rebuilds it in memory instead
        conn = self.conn
        view = memoryview(data)
        chunks = [view[a : a + ANN_CHUNK_BYTES] for a in range(0, len(view), ANN_CHUNK_BYTES)] or [view[:0]]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM ann_chunks WHERE kind = ?", (kind,))
            conn.execute(
                "INSERT INTO ann_index(kind, generation, ids, n_chunks) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(kind) DO UPDATE SET generation=excluded.generation, ids=excluded.ids, n_chunks=excluded.n_chunks",
                (kind, self.generation(), _pack_ids(ids), len(chunks)),
            )
            conn.executemany(
                "INSERT INTO ann_chunks(kind, seq, data) VALUES (?, ?, ?)", ((kind, i, c) for i, c in enumerate(chunks))
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- checking -----------------------------------------------------------------------

    def check(self) -> dict[str, int]:
        """Verify the file: SQLite's integrity check, and that the blocks, the embeddings
        rows, the images and the identities agree. Returns counts; raises TwinshotError
        naming the first inconsistency."""
        ok = self.conn.execute("PRAGMA integrity_check").fetchone()[0]
        if ok != "ok":
            raise TwinshotError(f"{self.path}: SQLite integrity check failed: {ok}")
        rows = self.load_rows()
        db = self.conn.execute("SELECT id, identity_id FROM embeddings ORDER BY id").fetchall()
        db_ids = np.array([r[0] for r in db], dtype=np.int64)
        db_ident = np.array([r[1] for r in db], dtype=np.int64)
        if not (np.array_equal(db_ids, rows.ids) and np.array_equal(db_ident, rows.identity_ids)):
            raise TwinshotError(f"{self.path}: the embedding blocks and the embeddings table disagree")
        identities = {r[0] for r in self.conn.execute("SELECT id FROM identities")}
        used = set(db_ident.tolist())
        if used - identities:
            raise TwinshotError(f"{self.path}: embeddings refer to identities that do not exist")
        if identities - used:
            raise TwinshotError(f"{self.path}: identities without any embedding")
        orphans = self.conn.execute(
            "SELECT COUNT(*) FROM images WHERE embedding_id NOT IN (SELECT id FROM embeddings)"
        ).fetchone()[0]
        if orphans:
            raise TwinshotError(f"{self.path}: {orphans} kept image(s) without an embedding")
        return {"identities": len(identities), "embeddings": int(rows.ids.size), "images": self.count_images()}
