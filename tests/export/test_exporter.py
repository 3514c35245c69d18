"""export_model: ONNX and TorchScript files that embed like the model, their sidecars,
the parity check, and nothing left on disk when it fails."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from twinshot.errors import ConfigError, TwinshotError
from twinshot.export import ParityError, export_model, read_sidecar, sidecar_path
from twinshot.export import exporter as exporter_module
from twinshot.export.sidecar import SIDECAR_FORMAT, file_sha256
from twinshot.models import fingerprint, load_model, save_model

from tests.export.helpers import tiny_model

ort = pytest.importorskip("onnxruntime")


def _images(n: int, model, seed: int = 1) -> torch.Tensor:
    p = model.preprocessing
    g = torch.Generator().manual_seed(seed)
    return p.to_float(torch.randint(0, 256, (n, p.channels, *p.size), generator=g, dtype=torch.uint8))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_onnx_file_embeds_like_the_model(onnx_export) -> None:
    model, path, result = onnx_export
    assert result.path == path and path.is_file() and result.sidecar == sidecar_path(path)
    assert result.max_abs_diff <= 1e-4 and set(result.parity) == {1, 8}
    assert result.exporter.startswith("torch.onnx.export") and result.opset == 18 and result.dynamic_batch
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("images", "embeddings") and inp.shape[1:] == [1, 28, 28]
    for n in (1, 13):  # batch sizes the check did not use
        x = _images(n, model, seed=n)
        with torch.no_grad():
            expected = model.embed(x).numpy()
        got = session.run(None, {"images": x.numpy()})[0]
        assert got.shape == (n, 16) and np.abs(got - expected).max() <= 1e-4


def test_onnx_sidecar_holds_what_a_torch_free_runtime_needs(onnx_export) -> None:
    model, path, result = onnx_export
    meta = read_sidecar(path, model_format="onnx")
    assert meta["format"] == SIDECAR_FORMAT and meta["file"] == "encoder.onnx"
    assert meta["sha256"] == file_sha256(path) and meta["bytes"] == path.stat().st_size == result.bytes
    assert meta["preprocessing"] == {"size": [28, 28], "channels": 1, "invert": True, "mean": 0.0, "std": 1.0}
    assert meta["input"]["shape"] == ["batch", 1, 28, 28] and meta["output"]["shape"] == ["batch", 16]
    assert meta["embedding_dim"] == 16 and meta["normalized"] is False
    assert meta["head"] == {"name": "euclidean", "scale": 2.5, "bias": -0.75, "numpy": True}
    assert meta["fingerprint"] == fingerprint(model) == result.fingerprint
    assert meta["spec"] == model.spec.to_dict()
    assert meta["parity"]["passed"] and meta["parity"]["max_abs_diff"] == result.max_abs_diff
    assert any("255 - v" in step for step in meta["preprocessing_steps"])
    assert {"torch", "onnxruntime", "twinshot"} <= set(meta["versions"])


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_torchscript_export_with_koch_head_colour_and_normalisation(tmp_path: Path) -> None:
    model = tiny_model("weighted_l1", channels=3, size=24, invert=False, mean=0.5, std=0.25, normalize=True)
    out = tmp_path / "sub" / "encoder.pt"  # the folder is created
    result = export_model(model, "torchscript", out)
    assert result.exporter == "torch.jit.trace" and result.opset is None and result.max_abs_diff <= 1e-4
    module = torch.jit.load(str(out))
    for n in (1, 6):
        x = _images(n, model, seed=n)
        with torch.no_grad():
            assert (module(x) - model.embed(x)).abs().max().item() <= 1e-4
    meta = json.loads((tmp_path / "sub" / "encoder.pt.json").read_text())
    head = meta["head"]
    assert head["name"] == "weighted_l1" and head["scale"] == 1.5 and head["bias"] == 0.25
    assert head["beta"] == pytest.approx(0.3) and len(head["alpha"]) == 16
    assert np.array_equal(np.float32(head["alpha"]), model.head.alpha.detach().numpy())
    assert meta["preprocessing"]["mean"] == 0.5 and meta["preprocessing"]["channels"] == 3
    assert meta["normalized"] is True and meta["model_format"] == "torchscript"


def test_export_from_a_checkpoint_reference(tmp_path: Path) -> None:
    save_model(tiny_model("cosine"), tmp_path / "ckpt")
    result = export_model(str(tmp_path / "ckpt"), "torchscript", tmp_path / "e.pt")
    assert result.source == str((tmp_path / "ckpt").resolve())
    assert result.fingerprint == fingerprint(load_model(tmp_path / "ckpt"))
    assert read_sidecar(tmp_path / "e.pt")["source"] == result.source


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_failed_parity_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    real = exporter_module.run_exported
    monkeypatch.setattr(exporter_module, "run_exported", lambda f, p, x: real(f, p, x) + 2e-4)
    out = tmp_path / "encoder.bin"
    out.write_bytes(b"an earlier export")
    with pytest.raises(ParityError, match=r"max \|difference\| of embeddings .* > tolerance 0.0001.*nothing was written"):
        export_model(tiny_model(), fmt, out, exporter="legacy" if fmt == "onnx" else "auto")
    assert out.read_bytes() == b"an earlier export" and not sidecar_path(out).exists()
    assert _leftovers(tmp_path) == []


def test_tolerance_is_configurable_and_re_export_replaces(tmp_path: Path) -> None:
    model = tiny_model()
    out = tmp_path / "e.pt"
    first = export_model(model, "torchscript", out, tolerance=0.0, batch_sizes=(1, 3))  # tracing is exact
    assert first.max_abs_diff == 0.0 and set(first.parity) == {1, 3}
    with torch.no_grad():
        model.encoder.proj.bias.add_(1.0)
    second = export_model(model, "torchscript", out)
    assert second.fingerprint != first.fingerprint
    assert read_sidecar(out)["fingerprint"] == second.fingerprint
    assert _leftovers(tmp_path) == []


def test_legacy_exporter_with_a_fixed_batch(tmp_path: Path) -> None:
    model = tiny_model("cosine")
    try:
        result = export_model(model, "onnx", tmp_path / "e.onnx", exporter="legacy", dynamic_batch=False)
    except TwinshotError as exc:  # pragma: no cover - a torch without the legacy exporter
        pytest.skip(f"the legacy ONNX exporter does not run here: {exc}")
    assert result.exporter == "torch.onnx.export(dynamo=False)" and not result.dynamic_batch
    assert set(result.parity) == {1}
    session = ort.InferenceSession(str(tmp_path / "e.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == 1
    assert read_sidecar(tmp_path / "e.onnx")["input"]["shape"][0] == 1


def test_user_errors_are_one_clear_line(tmp_path: Path) -> None:
    model = tiny_model()
    with pytest.raises(ConfigError, match="unknown export format 'tflite'; valid: onnx, torchscript"):
        export_model(model, "tflite", tmp_path / "e")
    with pytest.raises(ConfigError, match="is a directory"):
        export_model(model, "onnx", tmp_path)
    with pytest.raises(ConfigError, match="unknown ONNX exporter"):
        export_model(model, "onnx", tmp_path / "e.onnx", exporter="tf2onnx")
    with pytest.raises(ConfigError, match="batch_sizes"):
        export_model(model, "onnx", tmp_path / "e.onnx", batch_sizes=(0,))
    with pytest.raises(TwinshotError, match="not found"):
        export_model(str(tmp_path / "no-such-model"), "onnx", tmp_path / "e.onnx")
    assert list(tmp_path.iterdir()) == []


def test_torchscript_export_keeps_the_encoders_test_shifts(tmp_path: Path) -> None:
    from twinshot.models import ModelSpec, build_model

    torch.manual_seed(0)
    model = build_model(ModelSpec(encoder="compact", encoder_params={"widths": [8, 8], "normalize": True, "test_shifts": True}, head="euclidean"))
    model.eval()
    result = export_model(model, "torchscript", tmp_path / "encoder.pt")
    traced = torch.jit.load(str(result.path))
    x = _images(5, model)
    with torch.no_grad():
        expected = model.embed(x)
        model.encoder.test_shifts = False
        one_view = model.embed(x)
    torch.testing.assert_close(traced(x), expected, atol=1e-5, rtol=0)
    assert not torch.allclose(expected, one_view, atol=1e-4)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_progress_reports_each_step_in_order(tmp_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    export_model(tiny_model("cosine"), "torchscript", tmp_path / "e.pt", batch_sizes=(1, 4, 8), progress=lambda *a: calls.append(a))
    assert [c[0] for c in calls] == [
        "load the model", "export to torchscript", "check parity (batch 1)", "check parity (batch 4)", "check parity (batch 8)", "done",
    ]
    assert [c[1] for c in calls] == [0, 1, 2, 3, 4, 5] and {c[2] for c in calls} == {5}
