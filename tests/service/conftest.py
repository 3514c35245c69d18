"""Fixtures of the service tests: a tiny model, images it tells apart, a gallery, keys, and
a real uvicorn server on 127.0.0.1 (a free port) in a background thread."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch

from twinshot.data.images import Preprocessing
from twinshot.models import ModelSpec, build_model, save_model

#: Threshold (a logit) of the test galleries. The tiny cosine model scores an image
#: against itself 10 * 1 - 5 = 5 and the test's different glyphs below 1.
THRESHOLD = 4.0
ADMIN_NAME, READ_NAME = "boss", "door-1"


def tiny_spec() -> ModelSpec:
    return ModelSpec(
        encoder="compact",
        encoder_params={"widths": [8, 8], "embedding_dim": 16},
        head="cosine",
        preprocessing=Preprocessing(size=(28, 28), invert=True),
    )


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_model(build_model(tiny_spec()).eval(), tmp_path_factory.mktemp("model") / "tiny")


def glyph(cls: int, size: int = 32, jitter: int = 0) -> np.ndarray:
    """A grey 'character' (dark strokes on white): three class-specific strokes; ``jitter``
    shifts them by one pixel in a seeded direction."""
    crng = np.random.default_rng(1000 + cls)
    shift = np.random.default_rng(jitter).integers(-1, 2, 2) if jitter else np.zeros(2, int)
    img = np.full((size, size), 255, np.uint8)
    for _ in range(3):
        r0, c0 = crng.integers(2, size - 6, 2) + shift
        horizontal = crng.random() < 0.5
        length = int(crng.integers(size // 3, size // 2))
        for t in range(length):
            r = int(np.clip(r0 + (0 if horizontal else t), 0, size - 1))
            c = int(np.clip(c0 + (t if horizontal else 0), 0, size - 1))
            img[max(0, r - 1) : r + 1, max(0, c - 1) : c + 1] = 0
    return img


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def faces() -> dict[str, bytes]:
    """PNG bytes: ``alice``, ``bob`` (to enroll) and ``stranger`` (never enrolled)."""
    return {"alice": png(glyph(0)), "bob": png(glyph(1)), "carol": png(glyph(3)), "stranger": png(glyph(2))}


@dataclass
class Live:
    """A running service."""

    url: str
    admin: str
    read: str
    gallery: Path
    audit: Path
    app: Any

    def headers(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}


def new_gallery(path: Path, model_dir: Path, **kwargs: Any) -> Path:
    """An empty gallery file at ``path`` for the tiny model, at :data:`THRESHOLD`."""
    from twinshot.gallery import Gallery

    with Gallery.create(path, model_dir, threshold=THRESHOLD, **kwargs):
        pass
    return path


def new_keys(path: Path) -> tuple[Path, str, str]:
    """A keys file with an admin and a read key; returns it and the two secrets."""
    from twinshot.service.keys import add_key

    return path, add_key(path, ADMIN_NAME, "admin"), add_key(path, READ_NAME, "read")


def launch(gallery: Path, keys: tuple[Path, str, str], *, config: dict[str, Any] | None = None, **limits: Any) -> tuple[Live, Callable[[], None]]:
    """Serve ``gallery`` with uvicorn on a free port of 127.0.0.1 in a thread; returns the
    service and a function that stops it."""
    from twinshot.service import KeyRing, Limits, ServiceConfig, create_app
    from twinshot.service.app import bind, server

    cfg = ServiceConfig(gallery=gallery, limits=Limits(**limits), decode_workers=2, **(config or {}))
    app = create_app(cfg, KeyRing.from_file(keys[0]))
    sock = bind("127.0.0.1", 0)
    srv = server(app, log_level="warning", access_log=False)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)

    def stop() -> None:
        srv.should_exit = True
        thread.join(timeout=10)

    port = sock.getsockname()[1]
    return Live(f"http://127.0.0.1:{port}", keys[1], keys[2], gallery, cfg.audit_path, app), stop


@pytest.fixture
def make_gallery(tmp_path: Path, model_dir: Path) -> Callable[..., Path]:
    return lambda name="door.db", **kwargs: new_gallery(tmp_path / name, model_dir, **kwargs)


@pytest.fixture
def keys_file(tmp_path: Path) -> tuple[Path, str, str]:
    return new_keys(tmp_path / "keys.json")


@pytest.fixture
def start(make_gallery: Callable[..., Path], keys_file: tuple[Path, str, str]) -> Iterator[Callable[..., Live]]:
    """``start(gallery=None, config=None, **limits)``: a service over a fresh gallery (or
    ``gallery``), served by uvicorn on a free port of 127.0.0.1; stopped after the test."""
    stops: list[Callable[[], None]] = []

    def start_(gallery: Path | None = None, *, config: dict[str, Any] | None = None, **limits: Any) -> Live:
        live, stop = launch(gallery or make_gallery(), keys_file, config=config, **limits)
        stops.append(stop)
        return live

    yield start_
    for stop in stops:
        stop()
