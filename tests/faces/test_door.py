"""The office door with the shipped ``faces`` model on real LFW photos: CLI and HTTP, a face
pasted off-centre into a larger frame, and a frame with no face (exit 2 / HTTP 422)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
import torch
from PIL import Image

from tests.conftest import DATASETS
from tests.faces.scenes import faceless_scene
from tests.service.conftest import launch, new_keys
from twinshot.cli.main import cli

LFW = DATASETS / "lfw"
PEOPLE = {"Colin_Powell": "Colin_Powell_0001.jpg", "Tony_Blair": "Tony_Blair_0001.jpg", "Serena_Williams": "Serena_Williams_0001.jpg"}


@pytest.fixture(autouse=True)
def _setup():
    if not LFW.is_dir():
        pytest.skip("LFW not found")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def frame(photo: Path, where: tuple[int, int] = (380, 200)) -> Image.Image:
    """A 640x480 'door camera' frame with ``photo`` pasted off-centre."""
    img = Image.new("RGB", (640, 480), (95, 100, 105))
    img.paste(Image.open(photo).convert("RGB"), where)
    return img


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
def test_door_cli(tmp_path: Path, capsys) -> None:
    door = tmp_path / "door.db"
    assert cli(["gallery", "create", str(door), "--model", "faces", "--json"]) == 0
    capsys.readouterr()
    for person, file in PEOPLE.items():
        assert cli(["gallery", "enroll", str(door), person, str(LFW / person / file), "--json"]) == 0
    capsys.readouterr()
    visitor = tmp_path / "visitor.png"
    frame(LFW / "Colin_Powell" / "Colin_Powell_0002.jpg").save(visitor)
    assert cli(["gallery", "identify", str(door), str(visitor), "--json"]) == 0
    out = _json(capsys)
    first = out["results"][0] if isinstance(out, dict) and "results" in out else out[0] if isinstance(out, list) else out
    assert first["identity"] == "Colin_Powell"
    assert cli(["verify", "faces", str(visitor), str(LFW / "Colin_Powell" / "Colin_Powell_0001.jpg"), "--json"]) == 0
    assert _json(capsys)["same"] is True
    empty = tmp_path / "empty.png"
    faceless_scene(640, 480).save(empty)
    assert cli(["gallery", "identify", str(door), str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "empty.png: no face found" in err and len(err.strip().splitlines()) == 1
    assert cli(["gallery", "enroll", str(door), "Nobody", str(empty)]) == 2
    assert cli(["gallery", "list", str(door), "--json"]) == 0
    assert "Nobody" not in capsys.readouterr().out  # no half-enrolled identity


@pytest.mark.slow
def test_door_http(tmp_path: Path) -> None:
    from twinshot.gallery import Gallery

    door = tmp_path / "door.db"
    with Gallery.create(door, "faces"):
        pass
    live, stop = launch(door, new_keys(tmp_path / "keys.json"))
    try:
        with httpx.Client(base_url=live.url, timeout=120) as c:
            admin, read = live.headers(live.admin), live.headers(live.read)
            for person, file in PEOPLE.items():
                r = c.post(f"/v1/identities/{person}/images", files=[("images", (file, (LFW / person / file).read_bytes(), "image/jpeg"))], headers=admin)
                assert r.status_code == 200, r.text
            buf = io.BytesIO()
            frame(LFW / "Tony_Blair" / "Tony_Blair_0002.jpg", (20, 30)).save(buf, format="PNG")
            r = c.post("/v1/identify", files={"image": ("door.png", buf.getvalue(), "image/png")}, headers=read)
            assert r.status_code == 200 and r.json()["identity"] == "Tony_Blair", r.text
            buf = io.BytesIO()
            faceless_scene(320, 240, tile=40).save(buf, format="PNG")
            r = c.post("/v1/identify", files={"image": ("dark.png", buf.getvalue(), "image/png")}, headers=read)
            assert r.status_code == 422 and r.json()["error"] == "no_face" and "dark.png" in r.json()["message"], r.text
    finally:
        stop()
