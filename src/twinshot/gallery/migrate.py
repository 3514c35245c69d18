"""Copy a gallery between stores (``twinshot gallery migrate SRC DST``), resumably.

The destination is created with the source's settings (model fingerprint and spec,
threshold, calibration, rule, score normalisation...) and a ``migration_source`` setting;
identities are then copied in chunks, each chunk one write of the destination store (one
transaction on SQLite and PostgreSQL; on Milvus each identity lands whole). Re-running the
same migration after a crash or a kill skips the identities already in the destination
(an identity is there whole or not at all) and copies the rest; when every identity is
there, ``migration_state`` becomes ``done``. A PostgreSQL or Milvus source is read one chunk
of identities at a time, so a gallery bigger than memory migrates; a SQLite source is read
whole (SQLite galleries are searched in memory anyway).

What is not copied: the audit trail (the destination's starts with the migration's own
enrollments, by ``migrate``), the cached faiss index, and image ids (the destination
assigns its own). Kept images are copied when both stores keep them; Milvus keeps none.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from twinshot.errors import TwinshotError
from twinshot.gallery.audit import Actor, AuditEntry
from twinshot.gallery.store import NewIdentity
from twinshot.gallery.stores import create_store, is_uri, open_store, parse

#: Identities per destination write.
CHUNK = 500
#: Settings that belong to one store and are not copied.
_LOCAL = {"schema_version", "generation", "created", "audit_salt", "metric", "next_batch", "next_identity", "next_image", "next_audit",
          "migration_source", "migration_state"}


def _name(location: str | os.PathLike) -> str:
    return parse(str(location)).display if is_uri(location) else os.path.abspath(location)


def migrate(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    *,
    chunk: int = CHUNK,
    progress: Callable[[int, int], None] | None = None,
    actor: Actor | None = None,
) -> dict[str, Any]:
    """Copy the gallery at ``source`` to ``destination`` (file paths or store URIs).

    Returns a summary: identities and embeddings copied now, skipped (already there from an
    interrupted run), and in total. Raises TwinshotError when the destination exists and is
    not an unfinished migration of this source."""
    if chunk < 1:
        raise TwinshotError(f"chunk must be >= 1, got {chunk}")
    actor = actor or Actor("migrate")
    src = open_store(source, readonly=True)
    try:
        meta = src.meta()
        src_name = _name(source)
        dst_kind = parse(str(destination)).kind if is_uri(destination) else "sqlite"
        keep = meta.get("keep_images") == "1" and not dst_kind.startswith("milvus")
        try:
            dst = open_store(destination)
        except TwinshotError as exc:
            if "no such gallery" not in str(exc):
                raise
            settings = {k: v for k, v in meta.items() if k not in _LOCAL}
            settings.update({"keep_images": "1" if keep else "0", "migration_source": src_name, "migration_state": "copying"})
            dst = create_store(destination, settings)
        try:
            with src.snapshot():  # the source as of one moment, while its writers go on
                return _copy(src, dst, src_name, keep, chunk, progress, actor)
        finally:
            dst.close()
    finally:
        src.close()


def _copy(src: Any, dst: Any, src_name: str, keep: bool, chunk: int, progress: Callable[[int, int], None] | None, actor: Actor) -> dict[str, Any]:
    dmeta = dst.meta()
    if dmeta.get("migration_source") != src_name:
        raise TwinshotError(
            f"{dst.path}: already exists and is not a migration of {src_name}; choose another destination "
            f"(a migration never writes into an existing gallery)"
        )
    if dmeta.get("fingerprint") != src.meta().get("fingerprint"):
        raise TwinshotError(f"{dst.path}: its model fingerprint differs from {src_name}'s")
    records = src.list_identities()
    done = {r.name for r in dst.list_identities()}
    todo = [r for r in records if r.name not in done]
    # A store that can read the rows of some identities (PostgreSQL, Milvus) is read one
    # chunk at a time, so a gallery bigger than memory migrates; SQLite's are read at once.
    chunked = hasattr(src, "rows_of_identities")
    everything = None if chunked else src.load_rows()
    copied_refs = 0
    total = len(records)
    if progress is not None:
        progress(total - len(todo), total)
    for a in range(0, len(todo), chunk):
        part = todo[a : a + chunk]
        rows = src.rows_of_identities([r.id for r in part]) if chunked else everything
        order = np.argsort(rows.identity_ids, kind="stable")
        ident_sorted = rows.identity_ids[order]
        items = []
        for r in part:
            lo, hi = np.searchsorted(ident_sorted, [r.id, r.id + 1])
            sel = order[lo:hi]
            if sel.size == 0:  # removed from the source after it was listed
                continue
            images = None
            if keep:
                kept = src.images(rows.ids[sel].tolist())
                images = [kept[int(i)] for i in rows.ids[sel]]
            items.append(NewIdentity(name=r.name, vectors=rows.vectors[sel], metadata=r.metadata, images=images))
        if items:
            dst.write_identities(items, on_exists="error", audit=AuditEntry("enroll", [it.name for it in items], {"references": sum(len(it.vectors) for it in items), "mode": "migrate"}, actor))
        copied_refs += sum(len(it.vectors) for it in items)
        if progress is not None:
            progress(total - len(todo) + min(len(todo), a + chunk), total)
    if dmeta.get("migration_state") != "done":
        dst.set_meta({"migration_state": "done"}, audit=AuditEntry("set", [], {"migration": "done", "source": src_name}, actor))
    return {
        "source": src_name,
        "destination": str(dst.path),
        "identities": total,
        "embeddings": int(everything.ids.size) if everything is not None else int(src.count_embeddings()),
        "copied_identities": len(todo),
        "copied_embeddings": copied_refs,
        "skipped_identities": total - len(todo),
        "images": "copied" if keep else "none",
    }
