"""The face-api weight loader and the packaged weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from twinshot.errors import TwinshotError
from twinshot.faces.weights import (
    PACKAGED_DIR,
    StoredTensor,
    depthwise_to_torch,
    hwio_to_oihw,
    load_packaged,
    load_stored,
    read_face_api,
    write_packaged,
)


def _write_manifest(tmp_path, weights, payload: bytes):
    (tmp_path / "m.bin").write_bytes(payload)
    manifest = [{"paths": ["m.bin"], "weights": weights}]
    (tmp_path / "m-weights_manifest.json").write_text(json.dumps(manifest))
    return tmp_path / "m-weights_manifest.json"


def test_reads_mixed_uint8_and_float32_entries(tmp_path) -> None:
    """A quantised entry takes 1 byte per value, a float32 one 4: offsets must follow."""
    q = np.array([0, 1, 255, 10], np.uint8)
    f = np.array([1.5, -2.25], np.float32)
    weights = [
        {"name": "a", "shape": [2, 2], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "b", "shape": [2], "dtype": "float32"},
    ]
    tensors = read_face_api(_write_manifest(tmp_path, weights, q.tobytes() + f.tobytes()))
    assert tensors["a"].dequantize().tolist() == [[-1.0, -0.5], [126.5, 4.0]]
    assert tensors["b"].dequantize().tolist() == [1.5, -2.25]
    # round trip through the packaged form keeps the bytes and the scale/min
    write_packaged(tensors, tmp_path / "p.safetensors")
    back = load_stored(tmp_path / "p.safetensors")
    assert back["a"].values.dtype == np.uint8 and back["a"].scale == 0.5 and back["a"].minimum == -1.0
    np.testing.assert_array_equal(back["b"].dequantize(), f)


def test_refuses_a_size_mismatch(tmp_path) -> None:
    weights = [{"name": "b", "shape": [2], "dtype": "float32"}]
    with pytest.raises(TwinshotError, match="read 8 bytes of 9"):
        read_face_api(_write_manifest(tmp_path, weights, b"\0" * 9))


def test_layout_conversions() -> None:
    w = torch.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # (kh, kw, in, out)
    assert hwio_to_oihw(w)[4, 3, 1, 2] == w[1, 2, 3, 4]
    d = torch.arange(2 * 3 * 4).reshape(2, 3, 4, 1)  # (kh, kw, C, 1)
    assert depthwise_to_torch(d)[3, 0, 1, 2] == d[1, 2, 3, 0]


def test_packaged_weights_and_provenance() -> None:
    prov = json.loads((PACKAGED_DIR / "PROVENANCE.json").read_text())
    assert prov["package"] == "@vladmandic/face-api" and prov["version"] == "1.7.15"
    assert "MIT License" in (PACKAGED_DIR / "LICENSE").read_text()
    w = load_packaged("face_recognition")
    assert len(w) == 117 and sum(t.numel() for t in w.values()) == 5_614_592
    assert w["conv32_down/conv/filters"].shape == (7, 7, 3, 32) and w["fc"].shape == (256, 128)
    assert all(t.dtype == torch.float32 for t in w.values())
    stored = load_stored(PACKAGED_DIR / "face_recognition.safetensors")
    assert sum(t.scale is not None for t in stored.values()) == 109  # 8 conv64 tensors are float32
    assert isinstance(stored["fc"], StoredTensor) and stored["fc"].values.dtype == np.uint8
