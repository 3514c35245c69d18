"""The ``ensemble`` encoder: members at their own input sizes, one concatenated embedding
whose distances are the members' weighted mean; saved, loaded, fingerprinted and exported
like any model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twinshot.data.images import Preprocessing
from twinshot.errors import ConfigError
from twinshot.models import ENCODERS, EnsembleEncoder, ModelSpec, build_model, fingerprint, load_model, save_model
from twinshot.models.encoders import single_view
from twinshot.models.ensemble import resize_matrix


def member(size: int | None = None, widths: tuple[int, ...] = (8, 8), shifts: bool = False) -> dict:
    m: dict = {"encoder": "compact", "params": {"widths": list(widths), "normalize": True, "test_shifts": shifts}}
    if size is not None:
        m["input_size"] = size
    return m


def spec(weights: list[float] | None = None, shifts: bool = False) -> ModelSpec:
    params: dict = {"members": [member(14, shifts=shifts), member(shifts=shifts)]}
    if weights is not None:
        params["weights"] = weights
    return ModelSpec(encoder="ensemble", encoder_params=params, head="euclidean", preprocessing=Preprocessing(size=(20, 20), invert=True))


@pytest.mark.parametrize("n_in, n_out", [(42, 28), (105, 28), (105, 42), (20, 14), (14, 20)])
def test_resize_matrix_is_pils_bilinear_resampling(n_in: int, n_out: int) -> None:
    from PIL import Image

    x = np.random.default_rng(0).random((n_in, n_in)).astype(np.float32) * 255
    expected = np.asarray(Image.fromarray(x, mode="F").resize((n_out, n_out), Image.Resampling.BILINEAR))
    r = resize_matrix(n_in, n_out)
    assert r.shape == (n_out, n_in)
    np.testing.assert_allclose((r @ torch.from_numpy(x) @ r.T).numpy(), expected, atol=1e-3)


def test_distances_are_the_weighted_mean_of_the_members() -> None:
    torch.manual_seed(0)
    model = build_model(spec(weights=[3.0, 1.0])).eval()
    enc = model.encoder
    assert isinstance(enc, EnsembleEncoder) and enc.normalized
    assert enc.input_shape == (1, 20, 20) and enc.embedding_dim == 8 * 3 * 3 + 8 * 5 * 5
    x = torch.rand(6, 1, 20, 20)
    with torch.no_grad():
        e = enc(x)
        small = enc.members[0].encoder(torch.nn.functional.interpolate(x, size=14, mode="bilinear", antialias=True))
        large = enc.members[1].encoder(x)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(6))
    assert enc.members[0].encoder.input_shape == (1, 14, 14)
    cos = e @ e.T
    expected = 0.75 * (small @ small.T) + 0.25 * (large @ large.T)
    torch.testing.assert_close(cos, expected, atol=2e-3, rtol=0)  # torch's antialias is close to PIL's, not equal
    torch.testing.assert_close(e[:, small.shape[1]:], 0.5 * large, atol=1e-5, rtol=0)


def test_a_member_sees_the_pil_resized_image() -> None:
    """The small member embeds (almost) what its own pipeline would give it: PIL's resize
    of the large input, without the rounding to 8 bits."""
    from PIL import Image

    torch.manual_seed(0)
    enc = build_model(spec()).encoder.eval()
    img = np.random.default_rng(1).integers(0, 256, (20, 20)).astype(np.float32)
    small = np.asarray(Image.fromarray(img, mode="F").resize((14, 14), Image.Resampling.BILINEAR)) / 255.0
    with torch.no_grad():
        got = enc.members[0](torch.from_numpy(img / 255.0).float()[None, None])
        own = enc.members[0].encoder(torch.from_numpy(small).float()[None, None])
    torch.testing.assert_close(got, own, atol=1e-5, rtol=0)


def test_save_load_fingerprint_and_test_shifts(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model(spec(shifts=True)).eval()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert fingerprint(loaded) == fingerprint(model)
    assert not any("rows" in k or "gains" in k for k in loaded.state_dict())  # rebuilt from the spec
    images = torch.randint(0, 256, (4, 1, 20, 20), dtype=torch.uint8)
    torch.testing.assert_close(loaded.embed_images(images), model.embed_images(images))
    shifted = loaded.embed_images(images)
    with single_view(loaded):
        one = loaded.embed_images(images)
    assert all(m.encoder.test_shifts for m in loaded.encoder.members)
    assert not torch.allclose(shifted, one)


def test_bad_members_are_refused_with_one_line() -> None:
    with pytest.raises(ConfigError, match="at least one member"):
        ENCODERS.build("ensemble", input_size=20)
    with pytest.raises(ConfigError, match="L2-normalised"):
        ENCODERS.build("ensemble", input_size=20, members=[{"encoder": "compact", "params": {"widths": [8]}}])
    with pytest.raises(ConfigError, match="input_size 28 must be from 1 to the ensemble's 20"):
        ENCODERS.build("ensemble", input_size=20, members=[member(28)])
    with pytest.raises(ConfigError, match="2 weights for 1 members"):
        ENCODERS.build("ensemble", input_size=20, members=[member()], weights=[1, 1])
    with pytest.raises(ConfigError, match="positive"):
        ENCODERS.build("ensemble", input_size=20, members=[member()], weights=[0])
    with pytest.raises(ConfigError, match="unknown key.*size"):
        ENCODERS.build("ensemble", input_size=20, members=[{"encoder": "compact", "size": 14}])
    with pytest.raises(ConfigError, match="cannot be a member"):
        ENCODERS.build("ensemble", input_size=20, members=[{"encoder": "ensemble"}])
    with pytest.raises(ConfigError, match="unknown parameter"):
        ENCODERS.build("ensemble", input_size=20, members=[{"encoder": "compact", "params": {"widht": 3}}])


def test_exports_to_torchscript_and_onnx_with_parity(tmp_path) -> None:
    from twinshot.export import export_model

    torch.manual_seed(0)
    model = build_model(spec(shifts=True)).eval()
    result = export_model(model, "torchscript", tmp_path / "e.pt")
    assert result.max_abs_diff <= 1e-4
    pytest.importorskip("onnxruntime")
    result = export_model(model, "onnx", tmp_path / "e.onnx")
    assert result.max_abs_diff <= 1e-4


def test_builtin_shifts_of_members_are_seen_so_tta_refuses_to_shift_them_again() -> None:
    from twinshot.evaluation.tta import has_builtin_shifts

    with_shifts, without = build_model(spec(shifts=True)), build_model(spec())
    assert has_builtin_shifts(with_shifts) and not has_builtin_shifts(without)
    exported = type("Exported", (), {"metadata": {"spec": with_shifts.spec.to_dict()}})()
    assert has_builtin_shifts(exported)
    assert not has_builtin_shifts(type("Exported", (), {"metadata": {"spec": without.spec.to_dict()}})())


def _signet(views: list[str] | None = None) -> dict:
    params: dict = {"input_width": 44, "widths": [4, 8, 8], "grid": [1, 2], "hidden": 6, "embedding_dim": 5, "normalize": True}
    if views:
        params["test_views"] = views
    return {"encoder": "signet", "input_size": 30, "params": params}


def test_rectangular_signet_members() -> None:
    from twinshot.evaluation.tta import has_builtin_shifts

    torch.manual_seed(0)
    pre = Preprocessing(size=(30, 44), invert=True, keep_aspect=True)
    params = {"members": [_signet(), _signet()], "input_width": 44}
    model = build_model(ModelSpec("ensemble", params, "euclidean", {}, pre)).eval()
    assert model.encoder.input_shape == (1, 30, 44) and model.embedding_dim == 10
    x = torch.rand(3, 1, 30, 44)
    with torch.no_grad():
        e = model.encoder(x)
        parts = [m.encoder(x) for m in model.encoder.members]
    torch.testing.assert_close(e, torch.cat(parts, 1) / 2**0.5)
    assert not has_builtin_shifts(model)
    viewed = build_model(ModelSpec("ensemble", {"members": [_signet(["shift:2"]), _signet()], "input_width": 44}, "euclidean", {}, pre))
    assert has_builtin_shifts(viewed)
    with pytest.raises(ConfigError, match="input width 44 must be from 1 to the ensemble's 40"):
        ENCODERS.build("ensemble", input_size=30, input_width=40, members=[_signet()])


def test_a_narrower_member_is_resized_along_each_axis() -> None:
    torch.manual_seed(0)
    small = {"encoder": "signet", "input_size": 20, "params": {**_signet()["params"], "input_width": 30}}
    enc = ENCODERS.build("ensemble", input_size=30, input_width=44, members=[small, _signet()]).eval()
    x = torch.rand(2, 1, 30, 44)
    resized = resize_matrix(30, 20) @ x @ resize_matrix(44, 30).t()
    with torch.no_grad():
        torch.testing.assert_close(enc.members[0](x), enc.members[0].encoder(resized))
