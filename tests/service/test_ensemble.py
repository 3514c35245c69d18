"""The HTTP service over a gallery whose model has an ``ensemble`` encoder (two members at
their own input sizes), on a real uvicorn server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from twinshot.data.images import Preprocessing
from twinshot.models import ModelSpec, build_model, save_model

from tests.service.conftest import THRESHOLD, launch, new_gallery, new_keys


def test_enroll_identify_verify_with_an_ensemble_model(tmp_path: Path, faces) -> None:
    torch.manual_seed(0)
    members = [
        {"encoder": "compact", "input_size": 20, "params": {"widths": [8, 8], "normalize": True}},
        {"encoder": "compact", "params": {"widths": [8, 8], "normalize": True, "test_shifts": True}},
    ]
    spec = ModelSpec(encoder="ensemble", encoder_params={"members": members}, head="cosine",
                     preprocessing=Preprocessing(size=(28, 28), invert=True))
    model_dir = save_model(build_model(spec).eval(), tmp_path / "ensemble")
    live, stop = launch(new_gallery(tmp_path / "g.db", model_dir), new_keys(tmp_path / "keys.json"))
    try:
        with httpx.Client(base_url=live.url, timeout=20) as c:
            admin, read = live.headers(live.admin), live.headers(live.read)
            for name in ("alice", "bob"):
                r = c.post(f"/v1/identities/{name}/images", files=[("images", (f"{name}.png", faces[name], "image/png"))], headers=admin)
                assert r.status_code == 200, r.text
            found = c.post("/v1/identify", files={"image": ("q.png", faces["alice"], "image/png")}, headers=read).json()
            assert found["identity"] == "alice" and found["score"] == pytest.approx(5.0, abs=1e-4) and found["threshold"] == THRESHOLD
            pair = c.post("/v1/verify", files={"image1": ("a.png", faces["bob"]), "image2": ("b.png", faces["bob"])}, headers=read).json()
            assert pair["same"] is True
    finally:
        stop()
