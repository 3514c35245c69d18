"""The gallery's own audit trail: one row per change (an enrollment, a removal, a
calibration, a setting), written by :meth:`GalleryStore.transaction` **in the same SQLite
transaction as the change**, so that after any crash every change that took effect has its
record and no record names a change that did not.

Table ``audit(id, time, who, client, action, identity, details JSON)``: ``who`` is the
caller's name (``"cli"``, an API key's name...), ``client`` its address when known,
``details`` the counts and options (never images or metadata).

Removing an identity is the right to be forgotten: its name must not stay in the file. So
the removal's transaction replaces the name in every audit row of that identity (and in
its own) by a pseudonym, ``forgotten:`` and 16 hex digits of a salted SHA-256
(:func:`pseudonym`; the salt is random per gallery), which still links the rows of one
person without naming them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Sequence

AUDIT_SCHEMA = """CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    who TEXT NOT NULL,
    client TEXT,
    action TEXT NOT NULL,
    identity TEXT,
    details TEXT NOT NULL DEFAULT '{}'
)"""


@dataclass(frozen=True)
class Actor:
    """Who asks for changes: a name (``"cli"``, ``"library"``, an API key's name) and, for
    the service, the client's address."""

    who: str = "library"
    client: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    """One change to record: ``action`` (``"enroll"``, ``"remove"``, ``"calibrate"``,
    ``"set"``, ``"reembed"``) on ``identities`` (one row each; none for settings)."""

    action: str
    identities: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    actor: Actor = Actor()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def write_audit(conn: sqlite3.Connection, entry: AuditEntry) -> int:
    """Insert ``entry`` (inside the caller's open transaction); returns the last row id."""
    conn.execute(AUDIT_SCHEMA)
    time, details = _now(), json.dumps(entry.details, sort_keys=True)
    names: Sequence[str | None] = list(entry.identities) or [None]
    conn.executemany(
        "INSERT INTO audit(time, who, client, action, identity, details) VALUES (?, ?, ?, ?, ?, ?)",
        [(time, entry.actor.who, entry.actor.client, entry.action, name, details) for name in names],
    )
    return int(conn.execute("SELECT MAX(id) FROM audit").fetchone()[0])


def pseudonym(conn: sqlite3.Connection, name: str) -> str:
    """The name's pseudonym in this gallery (creates the gallery's salt on first use; call
    inside a write transaction)."""
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('audit_salt', ?)", (secrets.token_hex(16),))
    salt = conn.execute("SELECT value FROM meta WHERE key = 'audit_salt'").fetchone()[0]
    return "forgotten:" + hashlib.sha256((salt + "\0" + name).encode()).hexdigest()[:16]


def forget(conn: sqlite3.Connection, name: str) -> str:
    """Replace ``name`` by its pseudonym in every audit row (inside the removal's
    transaction); returns the pseudonym."""
    conn.execute(AUDIT_SCHEMA)
    alias = pseudonym(conn, name)
    conn.execute("UPDATE audit SET identity = ? WHERE identity = ?", (alias, name))
    return alias


def read_audit(conn: sqlite3.Connection, *, after: int = 0) -> list[dict[str, Any]]:
    """Every audit row with ``id > after``, oldest first (empty for a gallery without one)."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='audit'").fetchone()
    if not exists:
        return []
    rows = conn.execute(
        "SELECT id, time, who, client, action, identity, details FROM audit WHERE id > ? ORDER BY id", (after,)
    ).fetchall()
    return [audit_record(*r) for r in rows]


def audit_record(change_id: int, time: str, who: str, client: str, action: str, identity: str | None, details: Any) -> dict[str, Any]:
    """One audit row as every store returns it; ``details`` is a dict or its JSON text
    (unreadable text counts as no details)."""
    if isinstance(details, (str, bytes)):
        try:
            details = json.loads(details)
        except ValueError:
            details = {}
    return {"change_id": int(change_id), "time": time, "who": who, "client": client, "action": action, "identity": identity,
            **({"details": details} if details else {})}
