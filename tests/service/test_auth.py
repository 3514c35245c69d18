"""Keys on the live service: 401 without or with a wrong key, 403 for a read key on an
admin route, both header forms accepted, and refused admin attempts audited."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.service.conftest import ADMIN_NAME, READ_NAME


def test_keys_on_every_route(start, faces) -> None:
    live = start()
    image = {"image": ("q.png", faces["alice"])}
    images = [("images", ("q.png", faces["alice"]))]
    read_routes = [
        ("POST", "/v1/identify", {"files": image}),
        ("POST", "/v1/search", {"files": images}),
        ("POST", "/v1/verify", {"files": {"image1": ("a.png", faces["alice"]), "image2": ("b.png", faces["bob"])}}),
        ("GET", "/v1/info", {}),
    ]
    admin_routes = [
        ("POST", "/v1/identities/zed/images", {"files": images}),
        ("DELETE", "/v1/identities/zed", {}),
        ("GET", "/v1/identities", {}),
    ]
    with httpx.Client(base_url=live.url, timeout=20) as c:
        for method, path, kwargs in read_routes + admin_routes:
            missing = c.request(method, path, **kwargs)
            assert missing.status_code == 401 and missing.json()["error"] == "unauthorized", path
            assert missing.headers["www-authenticate"] == "Bearer" and "missing API key" in missing.json()["message"]
            wrong = c.request(method, path, headers={"Authorization": "Bearer tsk_not-a-key-at-all"}, **kwargs)
            assert wrong.status_code == 401 and "wrong API key" in wrong.json()["message"], path
        for method, path, kwargs in admin_routes:
            r = c.request(method, path, headers=live.headers(live.read), **kwargs)
            assert r.status_code == 403 and r.json()["error"] == "forbidden", path
            assert READ_NAME in r.json()["message"] and live.read not in r.text
        for method, path, kwargs in read_routes:
            assert c.request(method, path, headers=live.headers(live.read), **kwargs).status_code == 200, path
            assert c.request(method, path, headers={"X-API-Key": live.read}, **kwargs).status_code == 200, path
            assert c.request(method, path, headers=live.headers(live.admin), **kwargs).status_code == 200, path  # admin may read
        assert c.get("/healthz").status_code == 200 and c.get("/door").status_code == 200  # no key needed
    lines = [json.loads(line) for line in live.audit.read_text().splitlines()]
    refused = [(e["action"], e["who"], e["status"]) for e in lines]
    assert ("enroll", "anonymous", 401) in refused and ("delete", "anonymous", 401) in refused
    assert ("enroll", READ_NAME, 403) in refused and ("delete", READ_NAME, 403) in refused
    assert all(live.read not in line and live.admin not in line for line in live.audit.read_text().splitlines())


def test_admin_key_is_recorded_as_who(start, faces) -> None:
    live = start()
    with httpx.Client(base_url=live.url, timeout=20) as c:
        c.post("/v1/identities/zed/images", files=[("images", ("z.png", faces["alice"]))], headers={"X-API-Key": live.admin})
    (entry,) = [json.loads(line) for line in live.audit.read_text().splitlines()]
    assert entry["who"] == ADMIN_NAME and entry["action"] == "enroll" and entry["outcome"] == "ok"


def test_a_service_without_keys_is_refused(make_gallery) -> None:
    from twinshot.errors import ConfigError
    from twinshot.service import KeyRing, ServiceConfig, create_app

    with pytest.raises(ConfigError, match="no API keys"):
        create_app(ServiceConfig(gallery=make_gallery()), KeyRing())
