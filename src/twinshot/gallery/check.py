"""``twinshot gallery check``: a read-only integrity check of a gallery file.

It opens the file read-only through SQLite (it never writes it, and never opens it
outside SQLite) and reports **every** problem it finds, not just the first:

* SQLite's own ``PRAGMA integrity_check``;
* the settings: dimension, schema version, model fingerprint, rule, a finite threshold,
  the calibration JSON and the calibration report;
* each block of vectors: a non-negative size, blobs of exactly ``n`` int64 ids, ``n``
  identity ids and ``n x dim`` float32 values, all finite;
* that the blocks and the ``embeddings`` table agree, no embedding points at a missing
  identity or block, no identity is without embeddings, no kept image without its
  embedding, image ids unique;
* that each identity's metadata parses (a problem) and its name follows today's rule (a
  warning: older versions accepted more).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from twinshot.errors import DamagedError, TwinshotError
from twinshot.gallery.names import load_stored_metadata, normalize_identity
from twinshot.gallery.store import GalleryStore
from twinshot.gallery.validate import read_settings

#: At most this many problems of one kind are listed (then a count of the rest).
MAX_LISTED = 20


@dataclass
class CheckReport:
    """What :func:`check_gallery` found. ``ok`` when ``problems`` is empty."""

    gallery: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    identities: int = 0
    embeddings: int = 0
    images: int = 0
    audit_records: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


def _listed(out: list[str], items: list[str], what: str) -> None:
    out.extend(items[:MAX_LISTED])
    if len(items) > MAX_LISTED:
        out.append(f"... and {len(items) - MAX_LISTED} more {what}")


def check_gallery(path: str | os.PathLike) -> CheckReport:
    """Check the gallery file at ``path`` (read-only); see the module's docstring.

    Raises:
        TwinshotError: the file does not exist or is not a gallery at all (then there is
            nothing to check).
    """
    from twinshot.gallery.stores import is_uri, open_store

    if is_uri(path):  # a database store checks itself (its engine keeps the tables consistent)
        db_store = open_store(path, readonly=True)
        try:
            report = CheckReport(gallery=str(db_store.path))
            try:
                counts = db_store.check()
            except TwinshotError as exc:
                report.problems.append(str(exc))
                return report
            report.identities, report.embeddings, report.images = counts["identities"], counts["embeddings"], counts["images"]
            report.audit_records = len(db_store.read_audit())
            return report
        finally:
            db_store.close()
    try:
        store = GalleryStore.open(path, readonly=True)
    except DamagedError as exc:  # a gallery, but too damaged to open: that is the finding
        report = CheckReport(gallery=str(path))
        report.problems.append(str(exc))
        return report
    report = CheckReport(gallery=str(path))
    try:
        store.conn.execute("BEGIN")  # one snapshot, while writers go on (WAL)
        _check(store, report)
    finally:
        store.close()
    return report


def _check(store: GalleryStore, report: CheckReport) -> None:
    conn, dim = store.conn, store.dim
    problems = report.problems
    integrity = [r[0] for r in conn.execute("PRAGMA integrity_check(100)")]
    if integrity != ["ok"]:
        _listed(problems, [f"SQLite integrity check: {m}" for m in integrity], "SQLite messages")
        return  # the tables cannot be trusted further
    meta = store.meta()
    try:
        read_settings(meta, store.path)
    except TwinshotError as exc:
        text = str(exc)
        problems.append(text.split("damaged (", 1)[1].rsplit("); run", 1)[0] if "damaged (" in text else text)
    try:
        json.loads(meta.get("model_spec", "{}") or "{}")
    except ValueError:
        problems.append("the model's spec is not valid JSON")

    # blocks: sizes, blobs, finite values
    block_ids: list[np.ndarray] = []
    block_ident: list[np.ndarray] = []
    bad: list[str] = []
    nonfinite = 0
    for bid, n, ids, ident, vec in conn.execute("SELECT id, n, ids, identity_ids, vectors FROM blocks ORDER BY id"):
        if not isinstance(n, int) or n < 0:
            bad.append(f"block {bid}: size {n!r} is not a non-negative integer")
            continue
        if not all(isinstance(b, bytes) for b in (ids, ident, vec)):
            bad.append(f"block {bid}: holds a value that is not a blob")
            continue
        if len(ids) != 8 * n or len(ident) != 8 * n or len(vec) != 4 * n * dim:
            bad.append(
                f"block {bid}: {n} rows but {len(ids)} id bytes, {len(ident)} identity bytes and {len(vec)} vector "
                f"bytes (expected {8 * n}, {8 * n} and {4 * n * dim} for dimension {dim})"
            )
            continue
        v = np.frombuffer(vec, dtype="<f4")
        nonfinite += int(v.size - np.isfinite(v).sum())
        block_ids.append(np.frombuffer(ids, dtype="<i8"))
        block_ident.append(np.frombuffer(ident, dtype="<i8"))
    _listed(problems, bad, "damaged blocks")
    if nonfinite:
        problems.append(f"{nonfinite} stored vector value(s) are NaN or infinite")
    ids = np.concatenate(block_ids) if block_ids else np.zeros(0, np.int64)
    ident = np.concatenate(block_ident) if block_ident else np.zeros(0, np.int64)
    order = np.argsort(ids, kind="stable")
    ids, ident = ids[order], ident[order]
    if ids.size != np.unique(ids).size:
        problems.append("an image id is stored twice in the blocks")

    rows = conn.execute("SELECT id, identity_id, block_id FROM embeddings ORDER BY id").fetchall()
    db_ids = np.array([r[0] for r in rows], dtype=np.int64)
    db_ident = np.array([r[1] for r in rows], dtype=np.int64)
    if not bad and not (np.array_equal(db_ids, ids) and np.array_equal(db_ident, ident)):
        missing = np.setdiff1d(db_ids, ids).size
        extra = np.setdiff1d(ids, db_ids).size
        problems.append(
            f"the blocks and the embeddings table disagree ({missing} embedding(s) without a vector, "
            f"{extra} vector(s) without an embedding row, or their identities differ)"
        )
    identities = {int(r[0]): r for r in conn.execute("SELECT id, name, metadata FROM identities")}
    orphans = sorted({int(i) for i in db_ident.tolist()} - identities.keys())
    if orphans:
        problems.append(f"{len(orphans)} embedding(s) belong to identities that do not exist (ids {orphans[:5]})")
    blocks = {int(r[0]) for r in conn.execute("SELECT id FROM blocks")}
    lost_blocks = sorted({int(r[2]) for r in rows} - blocks)
    if lost_blocks:
        problems.append(f"embeddings point at {len(lost_blocks)} block(s) that do not exist")
    empty = sorted(identities.keys() - set(db_ident.tolist()))
    if empty:
        problems.append(f"{len(empty)} identit(y/ies) without any embedding: {', '.join(repr(identities[i][1]) for i in empty[:5])}")
    orphan_images = conn.execute("SELECT COUNT(*) FROM images WHERE embedding_id NOT IN (SELECT id FROM embeddings)").fetchone()[0]
    if orphan_images:
        problems.append(f"{orphan_images} kept image(s) without an embedding")

    meta_bad, names_bad = [], []
    for _, name, metadata in identities.values():
        _, why = load_stored_metadata(metadata)
        if why:
            meta_bad.append(f"identity {name!r}: {why}")
        try:
            if normalize_identity(name) != name:
                names_bad.append(f"identity {name!r}: name is not in Unicode NFC")
        except TwinshotError as exc:
            names_bad.append(str(exc))
    _listed(problems, meta_bad, "identities with bad metadata")
    _listed(report.warnings, names_bad, "names")
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='audit'").fetchone():
        report.warnings.append("no audit table (a gallery made before changes were audited; the next change adds it)")
    else:
        report.audit_records = int(conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0])
    report.identities = len(identities)
    report.embeddings = int(db_ids.size)
    report.images = int(conn.execute("SELECT COUNT(*) FROM images").fetchone()[0])
