"""Every error the service answers with: one JSON object, never a stack trace or a path.

Body::

    {"error": "too_many_pixels",                      # a stable code for programs
     "message": "image 'big.png' is 20000x20000 ...",  # one line for people
     "limit": "max_pixels", "max": 25000000}           # only for refused limits
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from twinshot.errors import TwinshotError

log = logging.getLogger("twinshot.service")

#: Absolute paths (two or more components) are cut out of any message that leaves.
_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[/\\](?:[\w.@+-]+[/\\])+[\w.@+-]*")


class ServiceError(StarletteHTTPException):
    """An answer other than 2xx. (An ``HTTPException`` so that FastAPI passes it through
    unchanged when it is raised while the body is read.)

    Args:
        status: the HTTP status.
        code: the stable error code (``"not_an_image"``, ``"too_many_pixels"``...).
        message: one line for people (no paths).
        limit: the name of the limit refused (a :class:`~twinshot.service.config.Limits`
            field), if any; ``max_value`` its value (``"max"`` in the body).
        headers: extra response headers.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        limit: str | None = None,
        max_value: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers)
        self.status, self.code, self.message = status, code, message
        self.limit, self.max_value = limit, max_value

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.limit is not None:
            out["limit"] = self.limit
            out["max"] = self.max_value
        return out


def error_response(exc: ServiceError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def scrub(message: str, *known: str) -> str:
    """``message`` with the ``known`` strings (the gallery's path...) replaced by a
    neutral word and any other absolute path cut out."""
    for k in known:
        if k:
            message = message.replace(k, "the gallery")
    return _PATH.sub("<path>", message)


_STATUS_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}


def install(app: FastAPI, *, known: tuple[str, ...] = ()) -> None:
    """Register the handlers that turn every exception into the JSON body above."""

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form")]
        field = ".".join(where) or "request"
        if first.get("type") == "missing":
            return error_response(ServiceError(422, "missing_field", f"missing field {field!r}"))
        reason = str(first.get("msg", "invalid value"))
        return error_response(ServiceError(422, "invalid_field", f"field {field!r}: {scrub(reason, *known)}"))

    @app.exception_handler(TwinshotError)
    async def _twinshot(request: Request, exc: TwinshotError) -> JSONResponse:
        return error_response(ServiceError(422, "invalid_input", scrub(str(exc), *known)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else code
        return error_response(ServiceError(exc.status_code, code, scrub(detail, *known), headers=getattr(exc, "headers", None)))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(ServiceError(500, "internal", "internal error; the server's log has the details"))
