"""OnnxEmbedder: decodes like load_image, embeds like the torch model, scores like its
head, and never imports torch."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from twinshot.data.images import Preprocessing, load_image, load_images
from twinshot.errors import DataError
from twinshot.preprocessing import decode_image_array, to_float_array

pytest.importorskip("onnxruntime")
from twinshot.export import OnnxEmbedder, export_model  # noqa: E402

from tests.export.helpers import tiny_model  # noqa: E402

PREPROCESSINGS = [
    Preprocessing(size=(28, 28), invert=True),
    Preprocessing(size=(105, 105)),
    Preprocessing(size=(24, 32), channels=3, mean=0.5, std=0.25),
]


def _sources(image_folder: Path) -> list:
    rng = np.random.default_rng(0)
    png = sorted(image_folder.rglob("*.png"))[:2]
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(buf, format="PNG")
    return [
        png[0], str(png[1]), png[0].read_bytes(), buf.getvalue(), Image.open(png[1]),
        rng.integers(0, 256, (50, 45), dtype=np.uint8), rng.random((3, 20, 25)).astype(np.float32),
        rng.random((30, 30)) > 0.5, rng.integers(0, 256, (28, 28, 1), dtype=np.uint8),
    ]


@pytest.mark.parametrize("preprocessing", PREPROCESSINGS, ids=["28-invert", "105", "rgb-24x32-norm"])
def test_decode_is_load_image_without_torch(image_folder: Path, preprocessing: Preprocessing) -> None:
    for source in _sources(image_folder):
        arr = decode_image_array(source, preprocessing)
        assert arr.dtype == np.uint8 and arr.flags.c_contiguous and arr.flags.writeable
        assert np.array_equal(arr, load_image(source, preprocessing).numpy())
    x = np.random.default_rng(1).integers(0, 256, (3, preprocessing.channels, *preprocessing.size), dtype=np.uint8)
    assert np.array_equal(to_float_array(x, preprocessing), preprocessing.to_float(torch.from_numpy(x)).numpy())


def test_decode_on_real_omniglot_pngs(omniglot_dir: Path) -> None:
    p = Preprocessing(size=(28, 28), invert=True)
    with zipfile.ZipFile(omniglot_dir / "images_background_small1.zip") as zf:
        names = [n for n in zf.namelist() if n.endswith(".png")][:5]
        for name in names:
            data = zf.read(name)
            arr = decode_image_array(data, p)
            assert np.array_equal(arr, load_image(data, p).numpy())
            assert arr[0, 0, 0] == 0 and arr.max() > 128  # paper is background, ink foreground


def test_load_and_embed_match_the_torch_model(onnx_export, image_folder: Path) -> None:
    model, path, _ = onnx_export
    embedder = OnnxEmbedder(path, threads=1)
    assert embedder.preprocessing == model.preprocessing and embedder.embedding_dim == 16
    assert embedder.input_shape == (1, 28, 28) and embedder.fixed_batch is None
    sources = _sources(image_folder)
    images = embedder.load(sources)
    assert images.shape == (len(sources), 1, 28, 28)
    assert np.array_equal(images, load_images(sources, model.preprocessing).numpy())
    with torch.no_grad():
        expected = model.embed_images(torch.from_numpy(images)).numpy()
    assert np.abs(embedder.embed(sources) - expected).max() <= 1e-4
    many = np.random.default_rng(2).integers(0, 256, (300, 1, 28, 28), dtype=np.uint8)  # crosses batches
    with torch.no_grad():
        expected = model.embed_images(torch.from_numpy(many)).numpy()
    assert np.abs(embedder.embed_images(many) - expected).max() <= 1e-4
    assert np.abs(embedder.embed_images(many[:7], batch_size=3) - expected[:7]).max() <= 1e-4
    assert embedder.embed_images(many[:0]).shape == (0, 16)
    assert np.array_equal(embedder.load(many[:2]), 255 - many[:2])  # a 4-D batch is several images (inverted)


def test_scores_match_the_torch_head(onnx_export, image_folder: Path) -> None:
    model, path, _ = onnx_export
    embedder = OnnxEmbedder(path)
    files = sorted(image_folder.rglob("*.png"))
    e = embedder.embed(files)
    te = torch.from_numpy(e)
    # Both against a float64 reference from exact differences (self-pairs included: the
    # expanded |a|^2 - 2 a.b + |b|^2 once cancelled there, by 3e-4 on an AMD CPU).
    e64 = e.astype(np.float64)
    scale, bias = model.head.scale.item(), model.head.bias.item()
    ref = scale * -np.sqrt(((e64[:, None] - e64[None]) ** 2).sum(-1) + 1e-12) + bias
    with torch.no_grad():
        assert np.abs(model.head.pairwise_logits(te[:4], te).numpy() - ref[:4]).max() <= 1e-5
        assert np.abs(embedder.pairwise_logits(e[:4], e) - ref[:4]).max() <= 1e-5
        assert np.abs(embedder.logits(e[:5], e[5:10]) - np.diag(ref[:5, 5:10])).max() <= 1e-5
        assert np.abs(model.head(te[:5], te[5:10]).numpy() - np.diag(ref[:5, 5:10])).max() <= 1e-5
        x = load_images([files[0], files[6]], model.preprocessing)
        expected = model.head(*model.embed_images(x).split(1)).item()
    assert embedder.score_pair(files[0], files[6]) == pytest.approx(expected, abs=1e-4)


def test_no_torch_is_imported(onnx_export, image_folder: Path) -> None:
    _, path, _ = onnx_export
    png = sorted(image_folder.rglob("*.png"))[0]
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from twinshot.export import OnnxEmbedder, sigmoid
        embedder = OnnxEmbedder({str(path)!r})
        e = embedder.embed([{str(png)!r}, open({str(png)!r}, "rb").read(), np.eye(40, dtype=np.uint8) * 255])
        p = sigmoid(embedder.pairwise_logits(e, e))
        s = embedder.score_pair({str(png)!r}, np.eye(40, dtype=np.uint8) * 255)
        assert e.shape == (3, 16) and p.shape == (3, 3) and np.isfinite(s)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "kornia", "safetensors", "onnxscript"))
        print("HEAVY", heavy)
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "HEAVY []" in run.stdout


def test_errors_name_the_file(onnx_export, tmp_path: Path) -> None:
    _, path, _ = onnx_export
    alone = tmp_path / "alone.onnx"
    shutil.copy(path, alone)
    with pytest.raises(DataError, match=r"alone.onnx.json: no such file"):
        OnnxEmbedder(alone)
    shutil.copy(str(path) + ".json", str(alone) + ".json")
    with pytest.raises(DataError, match="SHA-256 differs"):  # the sidecar names encoder.onnx's bytes
        alone.write_bytes(path.read_bytes() + b"\0")
        OnnxEmbedder(alone)
    with pytest.raises(DataError, match="no such ONNX file"):
        OnnxEmbedder(tmp_path / "missing.onnx")
    embedder = OnnxEmbedder(path)
    with pytest.raises(DataError, match="must be uint8"):
        embedder.embed_images(np.zeros((2, 1, 28, 28), np.float32))
    with pytest.raises(DataError, match=r"\(2, 1, 32, 32\) do not match the model's input \(N, 1, 28, 28\)"):
        embedder.embed_images(np.zeros((2, 1, 32, 32), np.uint8))
    with pytest.raises(DataError, match=r"image #2 \(bytes\)"):
        embedder.load([np.eye(5, dtype=np.uint8) * 255, b"not an image"])
    with pytest.raises(DataError, match="no images given"):
        embedder.load([])


def test_a_torchscript_sidecar_is_not_an_onnx_model(tmp_path: Path) -> None:
    export_model(tiny_model(), "torchscript", tmp_path / "e.pt")
    shutil.copy(tmp_path / "e.pt.json", tmp_path / "e.onnx.json")
    (tmp_path / "e.onnx").write_bytes(b"x")
    with pytest.raises(DataError, match="describes a torchscript export, not onnx"):
        OnnxEmbedder(tmp_path / "e.onnx")
