"""The HTTP API (``/v1``). Images come as multipart uploads; answers are JSON with the
field names of the CLI's ``--json`` output. See ``docs/service.md``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Optional

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.convertors import Convertor, register_url_convertor

from twinshot.gallery import Actor
from twinshot.gallery.names import InvalidMetadata, parse_metadata
from twinshot.service.auth import client_of, require
from twinshot.service.engine import Engine, Upload
from twinshot.jsonsafe import clean
from twinshot.service.errors import ServiceError
from twinshot.service.keys import Principal


class AnyPathConvertor(Convertor):
    """Like Starlette's ``path``, but also matching newlines and other control characters,
    so that a name such as ``a%0Ab`` reaches the identity check (a 422), not a 404."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return str(value)

    def to_string(self, value: str) -> str:
        return str(value)


register_url_convertor("anypath", AnyPathConvertor())

router = APIRouter()

_K_HELP = "Candidates (identify) or neighbours (search) per query."


class CleanJSONResponse(JSONResponse):
    """JSON with NaN/inf written as null."""

    def render(self, content: Any) -> bytes:
        return super().render(clean(content))


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def _name(file: UploadFile, i: int) -> str:
    name = (file.filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:200] if name else f"image #{i + 1}"


async def _uploads(request: Request, files: list[UploadFile], allowed: int | None = None) -> list[Upload]:
    """Read the uploads, after checking how many files the whole request carries."""
    engine = engine_of(request)
    form = await request.form()  # already parsed (cached) by the time a route runs
    n_files = sum(1 for _, v in form.multi_items() if not isinstance(v, str))
    engine.check_count(n_files)
    if allowed is not None and n_files > allowed:
        raise ServiceError(422, "unexpected_field", f"this request takes {allowed} image(s), {n_files} were sent")
    return [Upload(_name(f, i), await f.read()) for i, f in enumerate(files)]


@router.get("/healthz", tags=["service"])
async def healthz() -> dict[str, str]:
    """Liveness: ``{"status": "ok"}`` (no key needed)."""
    return {"status": "ok"}


@router.get("/v1/info", tags=["service"])
async def info(request: Request, who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """The gallery's settings (threshold, rule, counts) and the request limits."""
    engine = engine_of(request)
    return {**engine.info(), "limits": asdict(engine.limits)}


@router.post("/v1/identify", tags=["recognise"])
async def identify(
    request: Request,
    image: UploadFile = File(..., description="The query image."),
    k: int = Query(5, description=_K_HELP),
    who: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """Who is in the image? ``identity`` is the best enrolled identity whose score reaches
    the gallery's threshold, or ``null`` (unknown); ``candidates`` the best ``k``."""
    (upload,) = await _uploads(request, [image], allowed=1)
    return await engine_of(request).identify(upload, k)


@router.post("/v1/verify", tags=["recognise"])
async def verify(
    request: Request,
    image1: Optional[UploadFile] = File(None, description="First image (with image2)."),
    image2: Optional[UploadFile] = File(None, description="Second image (with image1)."),
    image: Optional[UploadFile] = File(None, description="One image (with identity)."),
    identity: Optional[str] = Form(None, description="An enrolled identity (with image)."),
    scoring: Optional[str] = Form(None, description="With identity: 'distance' (default, the gallery's rule) or 'svm' (the identity's own SVM; needs kept images) or 'fused' (that SVM plus the model's stored pair model)."),
    who: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """Two images (``image1``, ``image2``), or one image and an enrolled ``identity``:
    the calibrated probability that they show the same identity, and the decision
    (``same``) at the gallery's threshold; with ``scoring=svm``, the identity's SVM score
    and its decision at 0 (no probability)."""
    engine = engine_of(request)
    if scoring is not None and identity is None:
        raise ServiceError(422, "invalid_field", "scoring is only used with image and identity")
    if image1 is not None and image2 is not None and image is None and identity is None:
        first, second = await _uploads(request, [image1, image2], allowed=2)
        return await engine.verify_pair(first, second)
    if image is not None and identity is not None and image1 is None and image2 is None:
        (upload,) = await _uploads(request, [image], allowed=1)
        return await engine.verify_identity(upload, identity, scoring or "distance")
    raise ServiceError(422, "missing_field", "give image1 and image2, or image and identity")


@router.post("/v1/search", tags=["recognise"])
async def search(
    request: Request,
    images: list[UploadFile] = File(..., description="One or more query images."),
    k: int = Query(10, description=_K_HELP),
    who: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """The ``k`` enrolled images most like each query (image retrieval), best first."""
    return await engine_of(request).search(await _uploads(request, images), k)


def _metadata(text: Optional[str], most: int) -> dict[str, Any] | None:
    """The metadata form field under the library's rule (a JSON object of bounded depth)."""
    if text is None or not text.strip():
        return None
    if len(text.encode()) > most:
        raise ServiceError(413, "metadata_too_large", f"metadata is over {most} bytes", limit="max_metadata_bytes", max_value=most)
    try:
        return parse_metadata(text)
    except InvalidMetadata as exc:
        raise ServiceError(422, "invalid_metadata", str(exc)) from None


async def _audited(request: Request, who: Principal, action: str, identity: str, change: Any, **what: Any) -> dict[str, Any]:
    """Run the change ``change(actor)`` (an engine call returning ``(answer, change id)``)
    and write its outcome to the audit log, whatever it is: ok, refused (4xx/503) or an
    internal error (500). The gallery holds its own record of every change that took
    effect, written in the change's transaction (see :meth:`AuditLog.reconcile`)."""
    audit = request.app.state.audit
    client = client_of(request)
    try:
        answer, change_id = await change(Actor(who.name, client))
    except ServiceError as exc:
        audit.record(who=who.name, action=action, identity=identity, **what, outcome=exc.code, status=exc.status, client=client)
        raise
    except Exception:
        audit.record(who=who.name, action=action, identity=identity, **what, outcome="internal", status=500, client=client)
        raise
    if action == "enroll":
        details = {**what, "references": len(answer["image_ids"]), "replaced": answer["replaced"]}
    else:
        details = {**what, "references": answer["removed"]}
    audit.record(who=who.name, action=action, identity=identity, **details, outcome="ok", status=200, client=client, change_id=change_id)
    return answer


@router.post("/v1/identities/{identity:anypath}/images", tags=["admin"])
async def enroll(
    request: Request,
    identity: str,
    images: list[UploadFile] = File(..., description="One or more reference images."),
    metadata: Optional[str] = Form(None, description='A JSON object stored with the identity, e.g. {"badge": 17}.'),
    mode: str = Query("new", description="If the identity is enrolled: 'new' refuses (409), 'add' adds, 'replace' replaces."),
    who: Principal = Depends(require("admin", "enroll")),
) -> dict[str, Any]:
    """Enroll ``identity`` with one or more reference images (one transaction). Only the
    embeddings are stored (unless the gallery keeps images)."""
    engine = engine_of(request)

    async def change(actor: Actor) -> tuple[dict[str, Any], int | None]:
        uploads = await _uploads(request, images)
        return await engine.enroll(identity, uploads, _metadata(metadata, engine.limits.max_metadata_bytes), mode, actor)

    return await _audited(request, who, "enroll", identity, change, references=len(images), mode=mode)


@router.delete("/v1/identities/{identity:anypath}", tags=["admin"])
async def remove(request: Request, identity: str, who: Principal = Depends(require("admin", "delete"))) -> dict[str, Any]:
    """Remove ``identity`` and every reference of it (the right to be forgotten): the rows
    are deleted in one transaction and the file is scrubbed of their bytes."""
    return await _audited(request, who, "delete", identity, lambda actor: engine_of(request).remove(identity, actor))


@router.get("/v1/identities", tags=["admin"])
async def identities(
    request: Request,
    offset: int = Query(0, ge=0, description="Skip this many identities (sorted by name)."),
    limit: int = Query(1000, ge=1, le=10_000, description="At most this many identities."),
    who: Principal = Depends(require("admin")),
) -> dict[str, Any]:
    """The enrolled identities, sorted by name: name, references, metadata, created."""
    return await engine_of(request).identities(offset, limit)
