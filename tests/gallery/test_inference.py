"""The gallery and ``twinshot verify`` on ONNX Runtime: torch-free runs of an exported
encoder, the ``inference`` choice and its cache, and the numpy search paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from twinshot.errors import ConfigError, TwinshotError
from twinshot.gallery import Gallery, verify_images
from twinshot.gallery.embedding import TorchEmbedder
from twinshot.gallery.index import topk
from twinshot.gallery.inference import load_embedder

from tests.gallery.helpers import random_images, saved_model

pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def setup(tmp_path: Path) -> dict[str, Path]:
    """A saved euclidean model, its ONNX export, 6 PNGs and a gallery enrolled with torch."""
    from twinshot.export import export_model

    model = saved_model(tmp_path / "model", head="euclidean", seed=1)
    onnx = tmp_path / "encoder.onnx"
    export_model(str(model), "onnx", onnx, exporter="legacy")
    for i, a in enumerate(random_images(6, seed=2)):
        Image.fromarray(a).save(tmp_path / f"{i}.png")
    with Gallery.create(tmp_path / "g.db", model, inference="torch") as g:
        assert g.backend == "torch"
        for i in range(4):
            g.enroll(f"id{i}", str(tmp_path / f"{i}.png"))
    return {"dir": tmp_path, "model": model, "onnx": onnx, "gallery": tmp_path / "g.db"}


CHILD = r"""
import json, sys
from twinshot.gallery import Gallery, verify_images
from twinshot.cli.main import cli
d, onnx, cache = sys.argv[1], sys.argv[2], sys.argv[3]
import twinshot.gallery.inference as inference
inference.DEFAULT_CACHE_DIR = __import__("pathlib").Path(cache)
out = {}
with Gallery.open(d + "/g.db", onnx) as g:
    out["backend"] = g.backend
    r = g.identify(d + "/1.png", k=2)[0]
    out["identify"] = [r.identity, r.score]
    out["verify"] = g.verify(d + "/0.png", d + "/1.png").score
    g.enroll("new", d + "/5.png")
    out["search"] = g.search(d + "/5.png", k=1).identities[0][0]
with Gallery.create(d + "/g2.db", onnx) as g:
    g.enroll("a", [d + "/0.png", d + "/1.png"])
    g.enroll("b", d + "/2.png")
    out["mean"] = g.identify(d + "/1.png", k=2, rule="mean")[0].identity
out["verify_images"] = verify_images(onnx, d + "/0.png", d + "/1.png").score
out["cli"] = cli(["verify", onnx, d + "/0.png", d + "/1.png", "--json"])
out["auto_cached"] = inference.load_embedder(d + "/model")[0].__class__.__name__
out["torch"] = "torch" in sys.modules
print("RESULT" + json.dumps(out))
"""


def test_gallery_and_verify_run_on_onnx_without_torch(setup: dict[str, Path], _onnx_cache: Path) -> None:
    d = setup["dir"]
    # the torch model's scores, for comparison
    with Gallery.open(setup["gallery"], setup["model"], inference="torch") as g:
        ref = g.identify(str(d / "1.png"), k=2)[0]
        ref_verify = g.verify(str(d / "0.png"), str(d / "1.png")).score
    # populate the "auto" cache for the checkpoint, so the child finds it without torch
    embedder, _ = load_embedder(setup["model"])
    assert embedder.__class__.__name__ == "OnnxEmbedder"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(d), str(setup["onnx"]), str(_onnx_cache)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["torch"] is False
    assert out["backend"] == "onnxruntime"
    assert out["identify"][0] == ref.identity == "id1"
    assert out["identify"][1] == pytest.approx(ref.score, abs=1e-4)
    assert out["verify"] == pytest.approx(ref_verify, abs=1e-4)
    assert out["verify_images"] == pytest.approx(ref_verify, abs=1e-4)
    assert out["search"] == "new" and out["mean"] == "a" and out["cli"] == 0
    assert out["auto_cached"] == "OnnxEmbedder"


def test_auto_uses_onnx_for_references_and_torch_for_objects(setup: dict[str, Path], _onnx_cache: Path) -> None:
    from twinshot.models import load_model

    embedder, ref = load_embedder(setup["model"])
    assert embedder.__class__.__name__ == "OnnxEmbedder" and ref == str(setup["model"].resolve())
    assert list(_onnx_cache.glob("*.onnx")) and list((_onnx_cache / "refs").glob("*.json"))
    model = load_model(setup["model"])
    assert isinstance(load_embedder(model)[0], TorchEmbedder)
    assert load_embedder(model, inference="onnx")[0].fingerprint == embedder.fingerprint
    assert isinstance(load_embedder(setup["model"], inference="torch")[0], TorchEmbedder)
    # same embeddings (to the export's tolerance) either way
    images = np.stack([np.asarray(Image.open(setup["dir"] / f"{i}.png"))[None] for i in range(3)])
    images = 255 - images  # the model inverts; any uint8 input will do here
    np.testing.assert_allclose(
        embedder.embed_images(images), TorchEmbedder(model).embed_images(images), atol=1e-4
    )


def test_auto_falls_back_to_torch_when_the_export_fails(setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import twinshot.export.exporter as exporter
    import twinshot.gallery.inference as inference

    monkeypatch.setattr(inference, "DEFAULT_CACHE_DIR", setup["dir"] / "empty-cache")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(exporter, "export_model", broken)
    embedder, _ = load_embedder(setup["model"])
    assert isinstance(embedder, TorchEmbedder)
    with Gallery.open(setup["gallery"]) as g:
        assert g.backend == "torch" and g.identify(str(setup["dir"] / "1.png"))[0].identity == "id1"
    with pytest.raises(TwinshotError, match="ONNX export of the model failed .RuntimeError: exporter exploded"):
        load_embedder(setup["model"], inference="onnx")


def test_inference_choices_are_checked(setup: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="unknown inference"):
        load_embedder(setup["model"], inference="gpu")
    with pytest.raises(ConfigError, match="ONNX"):
        load_embedder(setup["onnx"], inference="torch")
    # a torch gallery opened with the ONNX file, and verify_images with either, agree
    a, b = str(setup["dir"] / "0.png"), str(setup["dir"] / "2.png")
    assert verify_images(setup["onnx"], a, b).score == pytest.approx(verify_images(setup["model"], a, b, inference="torch").score, abs=1e-4)


def test_gallery_refuses_an_onnx_file_of_another_model(setup: dict[str, Path], tmp_path: Path) -> None:
    from twinshot.errors import TwinshotError
    from twinshot.export import export_model

    other = tmp_path / "other.onnx"
    export_model(str(saved_model(tmp_path / "other", head="euclidean", seed=7)), "onnx", other, exporter="legacy")
    with pytest.raises(TwinshotError, match="model mismatch"):
        Gallery.open(setup["gallery"], other)


@pytest.mark.parametrize("shape,k", [((3, 50), 5), ((1, 7), 7), ((4, 1000), 1), ((2, 3), 10)])
def test_numpy_topk_matches_torch(shape: tuple[int, int], k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import twinshot.gallery.index as index

    scores = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    want_s, want_i = torch.topk(torch.from_numpy(scores), min(k, shape[1]), dim=1)
    monkeypatch.setattr(index, "_torch_loaded", lambda: False)
    got_s, got_i = topk(scores, k)
    np.testing.assert_array_equal(got_s, want_s.numpy())
    np.testing.assert_array_equal(got_i, want_i.numpy())


def _block_topk_cases() -> list[tuple[str, np.ndarray, int]]:
    rng = np.random.default_rng(1)
    wide = rng.standard_normal((5, 10_000)).astype(np.float32)
    ragged = rng.standard_normal((3, 1_017)).astype(np.float32)  # a partial last block
    clustered = rng.standard_normal((2, 4_096)).astype(np.float32)
    clustered[:, 64:74] += 50.0  # neighbouring columns
    clustered[:, 128::128] += 60.0  # every best column in the same (interleaved) block
    tail = rng.standard_normal((2, 2_000)).astype(np.float32)
    tail[:, -5:] += 50.0  # the best columns in the partial block
    spread = np.arange(8_192, dtype=np.float32)[None, :].repeat(2, 0)  # one best per block
    with_inf = rng.standard_normal((2, 5_000)).astype(np.float32)
    with_inf[:, ::2] = -np.inf
    return [("wide", wide, 10), ("ragged", ragged, 5), ("clustered", clustered, 10), ("tail", tail, 8),
            ("spread", spread, 50), ("with_inf", with_inf, 20), ("k1", wide, 1)]


@pytest.mark.parametrize("engine", ["torch", "numpy"])
@pytest.mark.parametrize("name,scores,k", _block_topk_cases(), ids=[c[0] for c in _block_topk_cases()])
def test_block_topk_is_exact(engine: str, name: str, scores: np.ndarray, k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The block-maximum top-k gives exactly torch.topk's values and columns (no ties here)."""
    import twinshot.gallery.index as index

    monkeypatch.setattr(index, "TOPK_BLOCK_MIN", 0)  # the two-pass path even for these small tables
    want_s, want_i = torch.topk(torch.from_numpy(scores), k, dim=1)
    if engine == "numpy":
        monkeypatch.setattr(index, "_torch_loaded", lambda: False)
    got_s, got_i = topk(scores, k)
    np.testing.assert_array_equal(got_s, want_s.numpy())
    np.testing.assert_array_equal(got_i, want_i.numpy())
    assert got_i.dtype == np.int64


@pytest.mark.parametrize("rule", ["max", "mean"])
def test_numpy_aggregation_matches_torch(tmp_path: Path, rule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import twinshot.gallery.index as index
    from tests.gallery.helpers import clustered, tiny_model

    rng = np.random.default_rng(1)
    with Gallery.create(tmp_path / "g.db", tiny_model("euclidean")) as g:
        vectors = clustered(300, 16, 10)
        g.enroll_many([(f"p{i}", vectors[i * 3 : i * 3 + rng.integers(1, 4)], None, None) for i in range(100)])
        q = g._queries(clustered(5, 16, 10, seed=3))
        want = g._aggregate(q, 7, rule)
        monkeypatch.setattr(index, "_torch_loaded", lambda: False)
        got = g._aggregate_numpy(q, 7, rule)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[1], want[1])
