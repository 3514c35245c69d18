"""The audit log: one JSON line for every enroll and delete, and for every request refused
on an admin route or failed (500): who (the key's name), what, when, from where, and the
outcome. Never the images, never the metadata.

The gallery keeps its own record of each change, written **in the change's SQLite
transaction** (:mod:`twinshot.gallery.audit`); a line for a change that took effect carries
its ``change_id``. A crash between the commit and the line cannot lose the record: at
start-up :meth:`AuditLog.reconcile` appends every gallery record missing from the log
(``"recovered": true``), including changes made with the CLI.

Example line::

    {"time": "2025-01-01T09:00:00+00:00", "who": "admin", "action": "enroll",
     "identity": "alice", "references": 1, "outcome": "ok", "status": 200,
     "client": "127.0.0.1"}
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


class AuditLog:
    """Appends JSON lines to ``path`` (created if missing, mode 0600); each line is
    flushed and synced to disk before the request is answered. Thread-safe."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        if os.fstat(fd).st_size:  # a line cut short by a crash: end it, so the next one parses
            os.lseek(fd, -1, os.SEEK_END)
            if os.read(fd, 1) != b"\n":
                os.write(fd, b"\n")
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def change_ids(self) -> set[int]:
        """The ``change_id`` of every line (unparseable lines are skipped)."""
        seen: set[int] = set()
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    cid = json.loads(line).get("change_id")
                except (ValueError, AttributeError):
                    continue
                if isinstance(cid, int):
                    seen.add(cid)
        return seen

    def reconcile(self, records: list[dict[str, Any]]) -> int:
        """Append the gallery's audit ``records`` (from :func:`twinshot.gallery.audit.read_audit`)
        as lines marked ``"recovered": true``; returns how many."""
        for r in records:
            action = {"remove": "delete"}.get(r["action"], r["action"])
            extra = {k: v for k, v in r.items() if k not in ("change_id", "time", "who", "client", "action")}
            self.record(
                who=r["who"], action=action, outcome="ok", status=None, client=r["client"], change_id=r["change_id"],
                changed=r["time"], recovered=True, **extra,
            )
        return len(records)

    def record(self, *, who: str, action: str, outcome: str, status: int | None, client: str | None = None, **what: Any) -> dict[str, Any]:
        """Write one line: ``who`` did ``action`` (with the details ``what``: identity,
        references...) and the ``outcome`` (``"ok"``, or the error code) with HTTP ``status``."""
        entry = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "who": who,
            "action": action,
            **what,
            "outcome": outcome,
            "status": status,
            "client": client,
        }
        line = json.dumps(entry, ensure_ascii=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        return entry

    def close(self) -> None:
        with self._lock:
            self._file.close()
