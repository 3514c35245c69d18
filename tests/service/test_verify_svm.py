"""``POST /v1/verify`` with ``identity`` and ``scoring=svm`` on a real server: the claimed
identity's own SVM on real CEDAR signatures enrolled over HTTP (the library's answer), and
clear 4xx for an unknown scoring, an unknown identity and a gallery without kept images."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from twinshot.gallery import Gallery
from twinshot.models import ModelSpec, build_model, save_model
from twinshot.preprocessing import Preprocessing
from twinshot.writer_dependent.gallery_claims import WriterSVMClaims

from tests.service.conftest import new_gallery
from tests.service.test_api import enroll


@pytest.fixture
def signet_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    pre = Preprocessing(size=(30, 44), invert=True, keep_aspect=True)
    params = {"input_width": 44, "widths": [4, 8, 8], "grid": [1, 2], "hidden": 6, "embedding_dim": 5}
    return save_model(build_model(ModelSpec("signet", params, "euclidean", {}, pre)).eval(), tmp_path / "signet")


@pytest.fixture
def cedar(datasets_dir: Path) -> Path:
    root = datasets_dir / "cedar"
    if not root.is_dir():
        pytest.skip("cedar not found")
    return root


def _png(cedar: Path, writer: int, n: int, forged: bool = False) -> bytes:
    return (cedar / ("full_forg" if forged else "full_org") / f"{'forgeries' if forged else 'original'}_{writer}_{n}.png").read_bytes()


def claim(c: httpx.Client, live, image: bytes, identity: str, **data: str) -> httpx.Response:
    return c.post("/v1/verify", files={"image": ("q.png", image, "image/png")}, data={"identity": identity, **data}, headers=live.headers(live.read))


def test_svm_claims_over_http(start, tmp_path: Path, signet_dir: Path, cedar: Path) -> None:
    live = start(new_gallery(tmp_path / "bank.db", signet_dir, keep_images=True))
    with httpx.Client(base_url=live.url, timeout=60) as c:
        for w in (1, 2):
            assert enroll(c, live, str(w), *(_png(cedar, w, n) for n in (1, 2, 3))).status_code == 200
        questioned = {"genuine": _png(cedar, 1, 12), "forged": _png(cedar, 1, 1, forged=True)}
        got = {k: claim(c, live, v, "1", scoring="svm") for k, v in questioned.items()}
        for r in got.values():
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["scoring"] == "svm" and body["rule"] == "svm" and body["references"] == 3 and body["cohort"] == 3
            assert body["probability"] is None and body["same"] == (body["score"] >= body["threshold"] == 0.0)
        assert claim(c, live, questioned["genuine"], "1").json()["rule"] == "max"  # distance stays the default
        r = claim(c, live, questioned["genuine"], "1", scoring="best")
        assert r.status_code == 422 and "scoring must be 'distance', 'svm' or 'fused'" in r.text
        r = claim(c, live, questioned["genuine"], "1", scoring="fused")  # this model stores no fusion
        assert r.status_code == 409 and "stores no claims fusion" in r.text
        r = claim(c, live, questioned["genuine"], "9", scoring="svm")
        assert r.status_code == 404 and "'9' is not enrolled" in r.text
        r = c.post("/v1/verify", files={"image1": ("a.png", questioned["genuine"]), "image2": ("b.png", questioned["forged"])},
                   data={"scoring": "svm"}, headers=live.headers(live.read))
        assert r.status_code == 422 and "only used with image and identity" in r.text
    with Gallery.open(live.gallery, inference="torch", readonly=True) as g:  # the library's answer
        expected = WriterSVMClaims(g).verify("1", [questioned["genuine"], questioned["forged"]])
    assert [got["genuine"].json()["score"], got["forged"].json()["score"]] == pytest.approx([e.score for e in expected], abs=1e-5)


def test_svm_needs_kept_images(start, tmp_path: Path, signet_dir: Path, cedar: Path) -> None:
    live = start(new_gallery(tmp_path / "plain.db", signet_dir))
    with httpx.Client(base_url=live.url, timeout=60) as c:
        for w in (1, 2):
            assert enroll(c, live, str(w), _png(cedar, w, 1)).status_code == 200
        r = claim(c, live, _png(cedar, 1, 2), "1", scoring="svm")
        assert r.status_code == 409 and "keep_images" in r.text


def test_fused_claims_over_http(start, tmp_path: Path, cedar: Path) -> None:
    from tests.writer_dependent.test_fusion import saved_fusion_models

    signet, _, plain = saved_fusion_models(tmp_path / "models")
    live = start(new_gallery(tmp_path / "bank.db", signet, keep_images=True))
    with httpx.Client(base_url=live.url, timeout=60) as c:
        for w in (1, 2):
            assert enroll(c, live, str(w), *(_png(cedar, w, n) for n in (1, 2))).status_code == 200
        r = claim(c, live, _png(cedar, 1, 12), "1", scoring="fused")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["scoring"] == body["rule"] == "fused" and body["threshold"] == 0.1 and body["references"] == 2
        assert body["same"] == (body["score"] >= 0.1) and body["probability"] is None

