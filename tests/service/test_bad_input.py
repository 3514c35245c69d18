"""Every bad input is a 4xx JSON error naming what was wrong (and the limit, for limits),
never a 5xx, a stack trace or a server path: one test each."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np
import pytest

from tests.service.conftest import glyph, launch, new_gallery, new_keys, png

LIMITS = {"max_body_bytes": 300_000, "max_pixels": 250_000, "max_images": 3, "max_metadata_bytes": 256}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, model_dir: Path):
    """One service for the module (these requests change nothing), with small limits;
    ``alice`` enrolled."""
    root = tmp_path_factory.mktemp("bad")
    service, stop = launch(new_gallery(root / "door.db", model_dir), new_keys(root / "keys.json"), **LIMITS)
    with httpx.Client(base_url=service.url, timeout=20) as c:
        r = c.post("/v1/identities/alice/images", files=[("images", ("a.png", png(glyph(0))))], headers=service.headers(service.admin))
        assert r.status_code == 200
    yield service
    stop()


def header_only_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels, with almost no pixel data: a
    decompression bomb's signature, refused from the header alone."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def big_png(side: int) -> bytes:
    rng = np.random.default_rng(0)
    return png(rng.integers(0, 256, (side, side), dtype=np.uint8))


OK = png(glyph(0))
Call = Callable[[httpx.Client, Any], httpx.Response]


def identify_with(data: bytes, name: str = "q.png") -> Call:
    return lambda c, live: c.post("/v1/identify", files={"image": (name, data, "image/png")}, headers=live.headers(live.read))


def multipart_chunks(data: bytes):
    """A multipart body sent chunked (no Content-Length)."""
    boundary = b"xyzzy"
    yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
    for i in range(0, len(data), 65536):
        yield data[i : i + 65536]
    yield b"\r\n--" + boundary + b"--\r\n"


CASES: dict[str, tuple[Call, int, str, str | None]] = {
    # name: (request, status, error code, limit named)
    "not_an_image": (identify_with(b"this is not an image at all"), 422, "not_an_image", None),
    "truncated_image": (identify_with(big_png(100)[:5000]), 422, "unreadable_image", None),
    "empty_upload": (identify_with(b""), 422, "empty_image", None),
    "huge_image_pixels": (identify_with(png(np.zeros((600, 600), np.uint8))), 413, "too_many_pixels", "max_pixels"),
    "decompression_bomb_header": (identify_with(header_only_png(100_000, 100_000)), 413, "too_many_pixels", "max_pixels"),
    "bomb_under_pil_limit": (identify_with(header_only_png(9000, 9000)), 413, "too_many_pixels", "max_pixels"),
    "body_too_large": (identify_with(b"\x00" * 400_000), 413, "body_too_large", "max_body_bytes"),
    "body_too_large_chunked": (
        lambda c, live: c.post(
            "/v1/identify", content=multipart_chunks(b"\x00" * 400_000),
            headers={**live.headers(live.read), "Content-Type": "multipart/form-data; boundary=xyzzy"},
        ),
        413, "body_too_large", "max_body_bytes",
    ),
    "too_many_images": (
        lambda c, live: c.post("/v1/search", files=[("images", (f"{i}.png", OK)) for i in range(4)], headers=live.headers(live.read)),
        413, "too_many_images", "max_images",
    ),
    "two_images_to_identify": (
        lambda c, live: c.post("/v1/identify", files=[("image", ("a.png", OK)), ("image", ("b.png", OK))], headers=live.headers(live.read)),
        422, "unexpected_field", None,
    ),
    "missing_field": (lambda c, live: c.post("/v1/identify", headers=live.headers(live.read)), 422, "missing_field", None),
    "missing_images_on_enroll": (
        lambda c, live: c.post("/v1/identities/bob/images", data={"metadata": "{}"}, headers=live.headers(live.admin)),
        422, "missing_field", None,
    ),
    "text_instead_of_file": (
        lambda c, live: c.post("/v1/identify", data={"image": "hello"}, headers=live.headers(live.read)), 422, "invalid_field", None,
    ),
    "json_body_instead_of_multipart": (
        lambda c, live: c.post("/v1/identify", json={"image": "aGVsbG8="}, headers=live.headers(live.read)), 422, "missing_field", None,
    ),
    "broken_multipart": (
        lambda c, live: c.post(
            "/v1/identify", content=b"--b\r\nnonsense", headers={**live.headers(live.read), "Content-Type": "multipart/form-data"}
        ),
        400, "bad_request", None,
    ),
    "verify_half_a_pair": (
        lambda c, live: c.post("/v1/verify", files={"image1": ("a.png", OK)}, headers=live.headers(live.read)), 422, "missing_field", None,
    ),
    "unknown_identity_delete": (
        lambda c, live: c.delete("/v1/identities/nobody", headers=live.headers(live.admin)), 404, "unknown_identity", None,
    ),
    "unknown_identity_verify": (
        lambda c, live: c.post("/v1/verify", files={"image": ("a.png", OK)}, data={"identity": "nobody"}, headers=live.headers(live.read)),
        404, "unknown_identity", None,
    ),
    "already_enrolled": (
        lambda c, live: c.post("/v1/identities/alice/images", files=[("images", ("a.png", OK))], headers=live.headers(live.admin)),
        409, "already_enrolled", None,
    ),
    "wrong_key": (lambda c, live: c.post("/v1/identify", files={"image": ("q.png", OK)}, headers={"Authorization": "Bearer tsk_wrong"}), 401, "unauthorized", None),
    "k_zero": (lambda c, live: c.post("/v1/identify", files={"image": ("q.png", OK)}, params={"k": 0}, headers=live.headers(live.read)), 422, "invalid_k", "max_k"),
    "k_too_large": (lambda c, live: c.post("/v1/search", files={"images": ("q.png", OK)}, params={"k": 1000}, headers=live.headers(live.read)), 422, "invalid_k", "max_k"),
    "k_not_a_number": (lambda c, live: c.post("/v1/identify", files={"image": ("q.png", OK)}, params={"k": "ten"}, headers=live.headers(live.read)), 422, "invalid_field", None),
    "metadata_not_json": (
        lambda c, live: c.post("/v1/identities/bob/images", files=[("images", ("b.png", OK))], data={"metadata": "{badge"}, headers=live.headers(live.admin)),
        422, "invalid_metadata", None,
    ),
    "metadata_not_an_object": (
        lambda c, live: c.post("/v1/identities/bob/images", files=[("images", ("b.png", OK))], data={"metadata": "[1, 2]"}, headers=live.headers(live.admin)),
        422, "invalid_metadata", None,
    ),
    "metadata_too_large": (
        lambda c, live: c.post("/v1/identities/bob/images", files=[("images", ("b.png", OK))], data={"metadata": '{"x": "' + "a" * 300 + '"}'}, headers=live.headers(live.admin)),
        413, "metadata_too_large", "max_metadata_bytes",
    ),
    "bad_mode": (
        lambda c, live: c.post("/v1/identities/bob/images", files=[("images", ("b.png", OK))], params={"mode": "merge"}, headers=live.headers(live.admin)),
        422, "invalid_mode", None,
    ),
    "identity_name_too_long": (
        lambda c, live: c.post(f"/v1/identities/{'x' * 300}/images", files=[("images", ("b.png", OK))], headers=live.headers(live.admin)),
        422, "invalid_identity", "max_identity_chars",
    ),
    "identity_name_blank": (
        lambda c, live: c.post("/v1/identities/%20/images", files=[("images", ("b.png", OK))], headers=live.headers(live.admin)),
        422, "invalid_identity", None,
    ),
    "enroll_a_bad_image": (
        lambda c, live: c.post("/v1/identities/bob/images", files=[("images", ("b.png", OK)), ("images", ("c.png", b"GIF89a broken"))], headers=live.headers(live.admin)),
        422, "not_an_image", None,
    ),
    "unknown_route": (lambda c, live: c.get("/v1/nothing-here"), 404, "not_found", None),
    "wrong_method": (lambda c, live: c.get("/v1/identify", headers=live.headers(live.read)), 405, "method_not_allowed", None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_json_4xx(live, case: str) -> None:
    call, status, code, limit = CASES[case]
    with httpx.Client(base_url=live.url, timeout=20) as c:
        r = call(c, live)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code and isinstance(body["message"], str) and body["message"]
    if limit is not None:
        assert body["limit"] == limit and isinstance(body["max"], int)
    text = r.text
    assert "Traceback" not in text and 'File "' not in text
    assert str(live.gallery.parent) not in text and "site-packages" not in text


def test_bad_input_changed_nothing(live) -> None:
    """After every refusal above, the gallery holds exactly what it held before."""
    with httpx.Client(base_url=live.url, timeout=20) as c:
        listed = c.get("/v1/identities", headers=live.headers(live.admin)).json()
    assert [p["name"] for p in listed["identities"]] == ["alice"] and listed["n_embeddings"] == 1


def test_the_pixel_limit_is_checked_before_decoding(monkeypatch, live) -> None:
    """A huge image never reaches the decoder: refused from its header."""
    import twinshot.service.engine as engine

    calls = []
    monkeypatch.setattr(engine, "load_image", lambda *a, **k: calls.append(1))
    with httpx.Client(base_url=live.url, timeout=20) as c:
        r = identify_with(header_only_png(20_000, 20_000))(c, live)
    assert r.status_code == 413 and calls == []
