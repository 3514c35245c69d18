"""The audit log: one JSON line for every enroll and delete, and for every request refused
on an admin route: who (the key's name), what, when, from where, and the outcome. Never
the images, never the metadata.

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
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def record(self, *, who: str, action: str, outcome: str, status: int, client: str | None = None, **what: Any) -> dict[str, Any]:
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
