"""The web pages, served by the same process: ``/door`` (identify a photo) and
``/admin`` (enroll, list, remove). Plain HTML, CSS and JavaScript under ``static/``; the
pages call the JSON API with a key the user types in."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

STATIC = Path(__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/door", status_code=307)


@router.get("/door")
async def door() -> FileResponse:
    return FileResponse(STATIC / "door.html", media_type="text/html")


@router.get("/admin")
async def admin() -> FileResponse:
    return FileResponse(STATIC / "admin.html", media_type="text/html")
