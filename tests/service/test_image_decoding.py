"""The door bug over HTTP (issue 11, defect 2): a 16-bit photo of a stranger was recognised
as an enrolled person (both decoded as blank pages). Now 16-bit uploads decode like their
8-bit versions, and an image with no content or an absurd aspect ratio is refused on every
route that takes images with a 422 naming the upload and the reason."""

from __future__ import annotations

import io

import httpx
import numpy as np
from PIL import Image

from tests.service.conftest import THRESHOLD, glyph, png


def grey_glyph_16bit(cls: int) -> bytes:
    """A glyph drawn in mid-grey ink (level 100 of 255) on white, saved as a 16-bit PNG."""
    g = glyph(cls).astype(np.uint16)
    g[g == 0] = 100
    buf = io.BytesIO()
    Image.fromarray(g * 257).save(buf, format="PNG")
    return buf.getvalue()


def grey_glyph(cls: int) -> bytes:
    g = glyph(cls)
    g[g == 0] = 100
    return png(g)


BLANK = {
    "white.png": (png(np.full((32, 32), 255, np.uint8)), "no_content"),
    "one-pixel.png": (png(np.zeros((1, 1), np.uint8)), "no_content"),
    "grey16.png": (png(np.full((32, 32), 40000, np.uint16)), "no_content"),
    "strip.png": (png((np.arange(2000) % 2 * 255).astype(np.uint8)[None].repeat(2, 0)), "aspect_ratio"),
}


def routes(c: httpx.Client, live, name: str, data: bytes) -> dict[str, httpx.Response]:
    """The response of every route that takes an image, for one upload."""
    f = (name, data, "image/png")
    read, admin = live.headers(live.read), live.headers(live.admin)
    return {
        "identify": c.post("/v1/identify", files={"image": f}, headers=read),
        "search": c.post("/v1/search", files=[("images", f)], headers=read),
        "verify pair": c.post("/v1/verify", files={"image1": f, "image2": ("ok.png", grey_glyph(0), "image/png")}, headers=read),
        "verify identity": c.post("/v1/verify", files={"image": f}, data={"identity": "alice"}, headers=read),
        "enroll": c.post("/v1/identities/mallory/images", files=[("images", f)], headers=admin),
    }


def test_a_16bit_stranger_is_not_an_enrolled_person(start) -> None:
    live = start()
    with httpx.Client(base_url=live.url, timeout=20) as c:
        r = c.post("/v1/identities/alice/images", files=[("images", ("a16.png", grey_glyph_16bit(0), "image/png"))], headers=live.headers(live.admin))
        assert r.status_code == 200, r.text
        read = live.headers(live.read)
        stranger = c.post("/v1/identify", files={"image": ("s16.png", grey_glyph_16bit(2), "image/png")}, headers=read).json()
        assert stranger["identity"] is None and stranger["score"] < THRESHOLD  # the defect: "alice", score 5
        eight = c.post("/v1/identify", files={"image": ("s.png", grey_glyph(2), "image/png")}, headers=read).json()
        assert abs(stranger["score"] - eight["score"]) < 1e-3
        alice = c.post("/v1/identify", files={"image": ("a.png", grey_glyph(0), "image/png")}, headers=read).json()
        assert alice["identity"] == "alice" and alice["score"] > 4.99  # the 8-bit photo is the same picture


def test_blank_images_are_refused_on_every_route(start) -> None:
    live = start()
    with httpx.Client(base_url=live.url, timeout=20) as c:
        r = c.post("/v1/identities/alice/images", files=[("images", ("a.png", grey_glyph(0), "image/png"))], headers=live.headers(live.admin))
        assert r.status_code == 200, r.text
        for name, (data, code) in BLANK.items():
            for route, resp in routes(c, live, name, data).items():
                assert resp.status_code == 422, (name, route, resp.status_code, resp.text)
                body = resp.json()
                assert body["error"] == code, (name, route, body)
                assert name in body["message"], body
                reason = "no content" if code == "no_content" else "over the limit of 20:1"
                assert reason in body["message"], body
        listed = c.get("/v1/identities", headers=live.headers(live.admin)).json()
        assert [i["name"] for i in listed["identities"]] == ["alice"]  # mallory never enrolled
