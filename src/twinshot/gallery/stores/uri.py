"""Where a gallery lives, from the string a user gives: a file path (SQLite, the default)
or a URI naming a database store.

=====================================================  ======================================
``faces.db``, ``/data/faces.db``                       SQLite file (the embedded default)
``postgresql://USER:PASS@HOST:PORT/DB/TABLE``          PostgreSQL + pgvector: tables
                                                       ``TABLE_meta``, ``TABLE_identities``,
                                                       ``TABLE_embeddings``... in database DB
``postgresql:///DB/TABLE?host=/run/postgresql``        the same over a Unix socket (libpq
                                                       query parameters pass through)
``milvus://HOST:PORT/COLLECTION``                      a Milvus server (``milvus+https://``
                                                       for TLS; ``USER:PASS@`` or
                                                       ``?token=...`` to authenticate;
                                                       ``?db=NAME`` a Milvus database;
                                                       ``?consistency=Strong|Bounded|...``)
``milvus-lite:///abs/path/file.db/COLLECTION``         a Milvus Lite file (tests, laptops);
``milvus-lite:rel/path/file.db/COLLECTION``            relative to the working directory
                                                       (``?index=FLAT``: an exact index,
                                                       as for ``milvus://``)
=====================================================  ======================================

Names (TABLE, COLLECTION) are letters, digits and ``_``, starting with a letter, at most
40 characters: the store derives its table or collection names from them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from twinshot.errors import ConfigError, StorageError

SCHEMES = ("postgresql", "postgres", "milvus", "milvus+http", "milvus+https", "milvus-lite")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
T = TypeVar("T")


def is_uri(target: object) -> bool:
    """Whether ``target`` names a database store (else it is a file path)."""
    return isinstance(target, str) and target.split(":", 1)[0].lower() in SCHEMES and ":" in target


def redact(uri: str) -> str:
    """``uri`` with its password (and any ``password=``/``token=`` parameter) replaced by ``***``."""
    out = re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", uri)
    return re.sub(r"((?:password|token)=)[^&]*", r"\1***", out, flags=re.IGNORECASE)


@dataclass(frozen=True)
class StoreURI:
    """A parsed store location.

    Attributes:
        kind: ``"postgresql"``, ``"milvus"`` or ``"milvus-lite"``.
        name: the table prefix or collection name.
        target: what the client connects to: a libpq conninfo URI, a Milvus server URL,
            or a Milvus Lite file path.
        options: the remaining query parameters (``token``, ``db``, ``consistency``, ``index``...).
        display: the URI as given, password redacted (used in every message).
    """

    kind: str
    name: str
    target: str = field(repr=False)
    options: dict[str, str] = field(default_factory=dict, repr=False)
    display: str = ""
    #: the URI as given (password included): what reopens the store; never printed
    raw: str = field(default="", repr=False)

    def __str__(self) -> str:
        return self.display


def _check_name(name: str, uri: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"{redact(uri)}: the gallery name {name!r} must be letters, digits and '_', starting with a letter "
            f"(at most 40 characters), e.g. postgresql://HOST/DB/faces"
        )
    return name


def parse(uri: str) -> StoreURI:
    """Parse a store URI (see the module docstring); a malformed one raises ConfigError
    naming it (password redacted)."""
    scheme = uri.split(":", 1)[0].lower()
    shown = redact(uri)
    if scheme == "milvus-lite":
        rest = uri.split(":", 1)[1]
        rest = rest[2:] if rest.startswith("//") else rest
        rest, _, query = rest.partition("?")
        path, _, name = rest.rpartition("/")
        if not path or not name or not path.endswith(".db"):
            raise ConfigError(f"{shown}: expected milvus-lite:///PATH/TO/FILE.db/COLLECTION (a Lite file's name ends in .db)")
        return StoreURI("milvus-lite", _check_name(name, uri), path, dict(parse_qsl(query)), shown, uri)
    parts = urlsplit(uri)
    segments = [s for s in parts.path.split("/") if s]
    if scheme in ("postgresql", "postgres"):
        if not 1 <= len(segments) <= 2:
            raise ConfigError(f"{shown}: expected postgresql://[USER[:PASSWORD]@][HOST][:PORT]/[DB/]TABLE")
        name = segments[-1]
        db_path = "/" + segments[0] if len(segments) == 2 else ""
        target = urlunsplit(("postgresql", parts.netloc, db_path, parts.query, ""))
        return StoreURI("postgresql", _check_name(name, uri), target, {}, shown, uri)
    if len(segments) != 1 or not parts.hostname:
        raise ConfigError(f"{shown}: expected milvus://HOST:PORT/COLLECTION")
    options = dict(parse_qsl(parts.query))
    if parts.username is not None and "token" not in options:
        options["token"] = f"{parts.username}:{parts.password or ''}"
    http = "https" if scheme == "milvus+https" else "http"
    target = f"{http}://{parts.hostname}:{parts.port or 19530}"
    return StoreURI("milvus", _check_name(segments[0], uri), target, options, shown, uri)


def with_retries(connect: Callable[[], T], *, what: str, retry_on: tuple[type[BaseException], ...], attempts: int = 4, backoff_s: float = 0.25) -> T:
    """Call ``connect`` (something safe to repeat: opening a connection, a read), retrying
    on ``retry_on`` with exponential backoff (0.25 s, 0.5 s, 1 s); then raise a one-line
    :class:`StorageError` naming ``what`` (a redacted URI)."""
    delay = backoff_s
    for attempt in range(attempts):
        try:
            return connect()
        except retry_on as exc:
            if attempt == attempts - 1:
                text = " ".join(str(exc).split()) or type(exc).__name__
                raise StorageError(f"{what}: cannot reach the database after {attempts} attempts ({redact(text)[:300]})") from None
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
