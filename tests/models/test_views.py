"""Test-time views (``twinshot.models.views``): parsing, each kind on tiny images, and the
``compact`` encoder's ``test_views`` (``test_shifts`` is ``["shift:1"]``), exported with parity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from twinshot.data.images import Preprocessing
from twinshot.errors import ConfigError
from twinshot.models import ENCODERS, CompactEncoder, ModelSpec, build_model
from twinshot.models.encoders import shifted_views, single_view
from twinshot.models.views import ViewMaker, count_views, parse_views, rotation_grid, scale_matrix, shift_views


def test_parse_views_returns_kinds_and_values_and_counts_the_views() -> None:
    assert parse_views(["shift:1", "stroke:0.25", "scale:0.05", "rot:10"]) == [
        ("shift", 1.0), ("stroke", 0.25), ("scale", 0.05), ("rot", 10.0)]
    assert count_views([]) == 1 and count_views(["shift:1"]) == 5
    assert count_views(["shift:1", "stroke:0.5", "scale:0.1"]) == 9


@pytest.mark.parametrize("bad, msg", [
    (["blur:1"], "kind one of shift, stroke, scale, rot"), (["shift"], "kind one of"), (["shift:1.5"], "whole number"),
    (["stroke:2"], r"\(0, 1\]"), (["scale:0.7"], r"\(0, 0.5\)"), (["rot:0"], r"\(0, 45\]"), (["rot:x"], "not a number"),
    ("shift:2", "the string"),
])
def test_bad_entries_name_the_field_and_the_entry(bad, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg) as err:
        parse_views(bad, field="members[1].test_views")
    assert "members[1].test_views" in str(err.value)
    if not isinstance(bad, str):
        assert repr(bad[0]) in str(err.value)


def test_shift_views_move_the_image_and_repeat_the_edge() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    right, left, down, up = shift_views(x, 1)
    torch.testing.assert_close(right[..., 1:], x[..., :-1])
    torch.testing.assert_close(right[..., 0], x[..., 0])  # the edge column repeated
    torch.testing.assert_close(left[..., :-1], x[..., 1:])
    torch.testing.assert_close(down[..., 1:, :], x[..., :-1, :])
    torch.testing.assert_close(up[..., :-1, :], x[..., 1:, :])
    assert all(torch.equal(a, b) for a, b in zip(shifted_views(x), ViewMaker(["shift:1"], 4, 4)(x)))


def test_stroke_views_blend_with_the_dilation_and_the_erosion() -> None:
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0  # one ink pixel (ink is the foreground, 1)
    _, thick, thin = ViewMaker(["stroke:0.5"], 5, 5)(x)
    assert float(thick[0, 0, 1:4, 1:4].min()) == 0.5 and float(thick[0, 0, 2, 2]) == 1.0 and float(thick[0, 0, 0].sum()) == 0
    assert float(thin.max()) == 0.5  # the erosion removes a 1-pixel stroke, half-way


def test_scale_and_rotation_views_resample_about_the_centre() -> None:
    x = torch.rand(2, 1, 6, 6)
    views = ViewMaker(["scale:0.25", "rot:45"], 6, 6)(x)
    assert len(views) == 5 and all(v.shape == x.shape for v in views)
    m = scale_matrix(6, 0.75)
    torch.testing.assert_close(views[1], m @ x @ m.T)  # separable: rows, then columns
    assert float(m[0].sum()) < 1 and float(m[3].sum()) == pytest.approx(1.0)  # shrunk: zeros come in at the border
    # rotation grids: the identity at 0 degrees, a quarter turn at 90 (counter-clockwise as displayed)
    ident = F.grid_sample(x, rotation_grid(6, 6, 0.0).expand(2, -1, -1, -1), align_corners=False)
    torch.testing.assert_close(ident, x)
    quarter = F.grid_sample(x, rotation_grid(6, 6, 90.0).expand(2, -1, -1, -1), align_corners=False)
    torch.testing.assert_close(quarter, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="built for 6x6 inputs, got 8x8"):
        ViewMaker(["rot:5"], 6, 6)(torch.rand(1, 1, 8, 8))


def _compact(**params) -> CompactEncoder:
    torch.manual_seed(0)
    return ENCODERS.build("compact", widths=[8, 8], normalize=True, **params)


def test_compact_test_shifts_equal_the_shift_1_view_bit_for_bit() -> None:
    shifts, views = _compact(test_shifts=True).eval(), _compact(test_views=["shift:1"]).eval()
    views.load_state_dict(shifts.state_dict())
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(shifts(x), views(x))
    assert set(views.state_dict()) == set(_compact().state_dict())  # checkpoints unchanged by the views


def test_compact_test_views_average_in_eval_mode_only() -> None:
    enc = _compact(test_views=["shift:1", "stroke:0.5", "scale:0.05", "rot:10"]).eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        views = enc.views(x)
        assert len(views) == 11
        single = [enc._embed(v) for v in views]
        e = enc(x)
        with single_view(enc):
            assert enc.test_views == []
            one = enc(x)
    torch.testing.assert_close(e, F.normalize(torch.stack(single).mean(0), dim=1))
    torch.testing.assert_close(one, single[0])
    assert enc.test_views == ["shift:1", "stroke:0.5", "scale:0.05", "rot:10"]  # restored
    enc.train()
    torch.testing.assert_close(enc(x), enc._embed(x))  # training: one view


def test_compact_rejects_bad_views_and_both_settings() -> None:
    with pytest.raises(ConfigError, match="test_views entry 'scale:0.9'"):
        _compact(test_views=["scale:0.9"])
    with pytest.raises(ConfigError, match="test_shifts or test_views, not both"):
        _compact(test_shifts=True, test_views=["stroke:0.5"])


def test_compact_views_in_an_ensemble_and_the_tta_guard() -> None:
    from twinshot.evaluation.tta import has_builtin_shifts

    member = {"encoder": "compact", "params": {"widths": [8, 8], "normalize": True, "test_views": ["shift:1", "stroke:0.25"]}}
    plain = {"encoder": "compact", "params": {"widths": [8, 8], "normalize": True}}
    model = build_model(ModelSpec("ensemble", {"members": [member, plain]}, "euclidean", {}, Preprocessing(size=(28, 28), invert=True)))
    assert has_builtin_shifts(model)
    assert has_builtin_shifts(type("Exported", (), {"metadata": {"spec": model.spec.to_dict()}})())
    with single_view(model):
        assert model.encoder.members[0].encoder.test_views == []
    assert model.encoder.members[0].encoder.test_views == ["shift:1", "stroke:0.25"]


def test_compact_test_views_export_with_parity(tmp_path) -> None:
    from twinshot.export import export_model

    params = {"widths": [8, 8], "normalize": True, "test_views": ["shift:1", "stroke:0.5", "scale:0.05", "rot:10"]}
    torch.manual_seed(0)
    model = build_model(ModelSpec("compact", params, "euclidean", {}, Preprocessing(size=(28, 28), invert=True))).eval()
    assert export_model(model, "torchscript", tmp_path / "v.pt").max_abs_diff <= 1e-4
    pytest.importorskip("onnxruntime")
    assert export_model(model, "onnx", tmp_path / "v.onnx").max_abs_diff <= 1e-4
