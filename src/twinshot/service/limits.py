"""Request limits: the body's size (before and while reading it) and an image's pixel
count (from its header, before decoding)."""

from __future__ import annotations

import io
import json
import warnings
from typing import Any, Awaitable, Callable

from twinshot.service.errors import ServiceError

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def body_too_large(max_bytes: int) -> ServiceError:
    return ServiceError(
        413, "body_too_large", f"the request body exceeds the limit of {max_bytes} bytes", limit="max_body_bytes", max_value=max_bytes
    )


class BodyLimit:
    """ASGI middleware refusing request bodies over ``max_bytes`` with a 413 JSON error:
    at once when ``Content-Length`` says so (nothing is read), else as soon as the bytes
    read pass the limit (chunked uploads)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        if declared is not None and declared > self.max_bytes:
            await _send_json(send, body_too_large(self.max_bytes))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise body_too_large(self.max_bytes)  # turned into the 413 by the app's handler
            return message

        await self.app(scope, counted, send)


async def _send_json(send: Send, exc: ServiceError) -> None:
    body = json.dumps(exc.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": exc.status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def image_size(data: bytes, name: str, max_pixels: int) -> tuple[int, int]:
    """``(width, height)`` of an encoded image read from its header only; refuses (413)
    images over ``max_pixels`` and (422) bytes that are no image."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ServiceError(422, "empty_image", f"image {name!r} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
    except Image.DecompressionBombError:  # over twice PIL's own limit: certainly over ours
        raise ServiceError(
            413, "too_many_pixels", f"image {name!r} has more pixels than the limit of {max_pixels}", limit="max_pixels", max_value=max_pixels
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ServiceError(422, "not_an_image", f"{name!r} is not an image this service can read") from None
    if width * height > max_pixels:
        raise ServiceError(
            413,
            "too_many_pixels",
            f"image {name!r} is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}",
            limit="max_pixels",
            max_value=max_pixels,
        )
    return width, height
