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
from typing import Iterator

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


@pytest.fixture(scope="session")
def milvus_server(milvus_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``milvus://127.0.0.1:PORT``: Milvus Lite's gRPC server (``milvus-lite server``), so the
    network client path (``milvus://``), several clients at once, is tested too."""
    import shutil
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = shutil.which("milvus-lite") or str(Path(sys.executable).with_name("milvus-lite"))
    data = tmp_path_factory.mktemp("milvus-server")
    try:
        proc = subprocess.Popen([exe, "server", "--data-dir", str(data), "--host", "127.0.0.1", "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        _unavailable("Milvus Lite server", exc)
    line = ""
    while proc.poll() is None:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if "listening on" in line or not line:
            break
    if "listening on" not in line:
        proc.kill()
        _unavailable("Milvus Lite server", RuntimeError(line.strip() or f"exited with {proc.poll()}"))
    yield f"milvus://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def milvus_uri(milvus_available: None, tmp_path: Path) -> str:
    """A gallery URI in a fresh Milvus Lite file."""
    return f"milvus-lite://{tmp_path / 'milvus.db'}/g{next(_names)}"


@pytest.fixture(params=["sqlite", "postgresql", "milvus-lite", "milvus-server"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh gallery location on each store (Milvus both as a Lite file and through its
    gRPC server)."""
    if request.param == "sqlite":
        return str(tmp_path / "g.db")
    if request.param == "postgresql":
        return request.getfixturevalue("pg_uri")
    if request.param == "milvus-server":
        return f"{request.getfixturevalue('milvus_server')}/g{os.getpid()}_{next(_names)}"
    return request.getfixturevalue("milvus_uri")

