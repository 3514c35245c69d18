"""Real database servers for the store tests, started once per session:

* PostgreSQL 16 + pgvector from the ``pgserver`` package, in a temporary folder, reached
  over its Unix socket (as root, pgserver runs the server as its own ``pgserver`` user);
* Milvus Lite files (``milvus-lite``), one per test: only one process may open a Lite file.

When the environment variable ``CI`` is set, a server that cannot start **fails** the
tests that need it (CI must test the stores); elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import itertools
import os
import warnings
from pathlib import Path
from typing import Callable, Iterator

import pytest

_names = itertools.count()


def _unavailable(what: str, exc: BaseException) -> None:
    message = f"{what} could not start: {type(exc).__name__}: {exc}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: the store tests must run)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The libpq URI of a running PostgreSQL + pgvector server (Unix socket)."""
    try:
        import psycopg

        with warnings.catch_warnings():  # platformdirs warns that XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pgserver

            server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
        uri = server.get_uri()
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except Exception as exc:  # noqa: BLE001 - any failure to start is reported the same way
        _unavailable("PostgreSQL (pgserver)", exc)
    yield uri
    server.cleanup()


def pg_gallery_uri(base: str, name: str) -> str:
    """``postgresql://.../postgres/NAME?host=...`` from pgserver's ``postgresql://.../postgres?host=...``."""
    head, _, query = base.partition("?")
    return f"{head}/{name}" + (f"?{query}" if query else "")


@pytest.fixture
def pg_uri(pg_base: str) -> str:
    """A fresh gallery URI (a new table prefix) on the session's PostgreSQL."""
    return pg_gallery_uri(pg_base, f"g{os.getpid()}_{next(_names)}")


@pytest.fixture(scope="session")
def milvus_available() -> None:
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        _unavailable("Milvus Lite", exc)


@pytest.fixture
def milvus_uri(milvus_available: None, tmp_path: Path) -> str:
    """A gallery URI in a fresh Milvus Lite file."""
    return f"milvus-lite://{tmp_path / 'milvus.db'}/g{next(_names)}"


@pytest.fixture(params=["sqlite", "postgresql", "milvus"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh gallery location on each store."""
    if request.param == "sqlite":
        return str(tmp_path / "g.db")
    if request.param == "postgresql":
        return request.getfixturevalue("pg_uri")
    return request.getfixturevalue("milvus_uri")


Make = Callable[[str], str]
