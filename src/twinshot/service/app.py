"""The application: :func:`create_app` builds the FastAPI app over one gallery, and
:func:`run` serves it with uvicorn."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from twinshot.errors import ConfigError
from twinshot.service import errors, pages, routes
from twinshot.service.audit import AuditLog
from twinshot.service.config import ServiceConfig
from twinshot.service.engine import Engine
from twinshot.service.keys import KeyRing
from twinshot.service.limits import BodyLimit

log = logging.getLogger("twinshot.service")

#: The pages' Content-Security-Policy: everything from this origin only; photos and the
#: camera stream as blob:/data: URLs.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class SecurityHeaders:
    """ASGI middleware adding defensive headers to every response, a strict CSP to the
    pages, and ``Cache-Control: no-store`` to the API's answers (they name people)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]
        if path in ("/door", "/admin") or path.startswith("/static/"):
            extra.append((b"content-security-policy", PAGE_CSP.encode()))
        if path.startswith("/v1/"):
            extra.append((b"cache-control", b"no-store"))

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", []), *extra])
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(config: ServiceConfig, keys: KeyRing, *, engine: Engine | None = None) -> FastAPI:
    """The service over ``config.gallery``, accepting ``keys``.

    Opens the gallery now (so a missing file or a model mismatch fails before a port is
    bound) and closes it when the app shuts down.

    Raises:
        ConfigError: no keys.
        TwinshotError: the gallery cannot be opened.
    """
    if len(keys) == 0:
        raise ConfigError(
            "no API keys: make one with `twinshot keys add KEYS_FILE NAME --role admin` and pass --keys KEYS_FILE, "
            "or set TWINSHOT_ADMIN_KEY / TWINSHOT_READ_KEY"
        )
    _keep_uploads_in_memory(config.limits.max_body_bytes)
    if config.torch_threads is not None:
        import torch

        torch.set_num_threads(config.torch_threads)  # process-wide: this process serves
    engine = engine or Engine.open(config)
    audit = AuditLog(config.audit_path)
    recovered = audit.reconcile(engine.audit_since(audit.change_ids()))
    if recovered:
        log.warning("audit log: added %d change(s) recorded in the gallery but missing from the log", recovered)
    if engine.read_only_reason is not None:
        log.warning("the gallery is read-only here (%s): enroll and delete answer 503", engine.read_only_reason)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            engine.close()
            audit.close()

    from twinshot import __version__

    app = FastAPI(
        title="twinshot",
        version=__version__,
        summary="One-shot recognition against an enrolled gallery: identify, verify, search, enroll, delete.",
        default_response_class=routes.CleanJSONResponse,
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.keys = keys
    app.state.audit = audit
    where = str(config.gallery.resolve()) if isinstance(config.gallery, Path) else str(engine.gallery.path)
    errors.install(app, known=(str(config.gallery), where, engine.gallery.model_ref, str(config.audit_path)))
    app.include_router(routes.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    app.add_middleware(BodyLimit, max_bytes=config.limits.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    return app


def _keep_uploads_in_memory(max_bytes: int) -> None:
    """Starlette spools uploads over 1 MB to a temporary file; raise that bound to the body
    limit so that uploaded images never touch the disk (they are not stored by default)."""
    from starlette.formparsers import MultiPartParser

    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, max_bytes + 1)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port must be a whole number from 0 to 65535, got {port!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, so that asyncio sets TCP_NODELAY on each accepted connection (it
    # checks the proto); without it a keep-alive answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def server(app: FastAPI, *, log_level: str = "info", access_log: bool = True) -> Any:
    """A uvicorn server for ``app`` (run it with ``server.run(sockets=[sock])``)."""
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="on", timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def run(app: FastAPI, sock: socket.socket, *, log_level: str = "info", on_ready: Callable[[], None] | None = None) -> None:
    """Serve ``app`` on the bound, listening socket until interrupted (Ctrl-C or SIGTERM).
    ``on_ready`` is called just before serving starts: the socket already listens, so a
    client that connects then waits in its backlog until the server accepts."""
    srv = server(app, log_level=log_level)
    if on_ready is not None:
        on_ready()
    srv.run(sockets=[sock])
