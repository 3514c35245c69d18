"""Checking the API key of a request: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``.

Missing or wrong key: 401 (with ``WWW-Authenticate: Bearer``); a read key on an admin
route: 403. Refusals on admin routes are written to the audit log.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from twinshot.service.errors import ServiceError
from twinshot.service.keys import KeyRing, Principal

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer tsk_...`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key, as a header of its own")


def client_of(request: Request) -> str | None:
    return request.client.host if request.client else None


def require(role: str, action: str | None = None) -> Callable[..., Awaitable[Principal]]:
    """A dependency that returns the caller's :class:`Principal` if its key holds ``role``.
    ``action`` names the admin action for the audit log's refusal lines."""

    async def check(
        request: Request,
        bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
        header: str | None = Depends(_header),
    ) -> Principal:
        keys: KeyRing = request.app.state.keys
        secret = bearer.credentials if bearer is not None else header
        principal = keys.authenticate(secret)
        error: ServiceError | None = None
        if principal is None:
            message = "missing API key" if not secret else "wrong API key"
            error = ServiceError(
                401, "unauthorized", f"{message}: send `Authorization: Bearer KEY` or `X-API-Key: KEY`", headers={"WWW-Authenticate": "Bearer"}
            )
        elif not principal.may(role):
            error = ServiceError(403, "forbidden", f"the key {principal.name!r} has the {principal.role} role; this route needs the {role} role")
        if error is not None:
            if action is not None:
                identity = request.path_params.get("identity")
                request.app.state.audit.record(
                    who=principal.name if principal else "anonymous", action=action, outcome=error.code,
                    status=error.status, client=client_of(request), **({"identity": identity} if identity else {}),
                )
            raise error
        return principal  # type: ignore[return-value]

    return check
