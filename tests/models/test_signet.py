"""The SigNet-like signature encoder: shapes on non-square input, registry, and the
aspect-keeping preprocessing it is used with."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from twinshot.data.images import Preprocessing
from twinshot.errors import ConfigError
from twinshot.models import ENCODERS, ModelSpec, build_model
from twinshot.preprocessing import decode_image_array


def test_shapes_and_normalisation() -> None:
    enc = ENCODERS.build("signet", input_size=48, input_width=72, widths=[8, 8, 8, 8], grid=[2, 3], hidden=16, embedding_dim=12, normalize=True)
    x = torch.rand(3, 1, 48, 72)
    e = enc(x)
    assert e.shape == (3, 12) and enc.input_shape == (1, 48, 72)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3))
    assert enc(torch.rand(2, 1, 40, 90)).shape == (2, 12)  # any size: adaptive pooling


def test_built_from_a_spec_with_keep_aspect() -> None:
    pre = Preprocessing(size=(48, 72), invert=True, keep_aspect=True)
    model = build_model(ModelSpec("signet", {"input_width": 72, "widths": [8, 8, 8], "embedding_dim": 8}, "euclidean", {}, pre))
    assert model.encoder.input_shape == (1, 48, 72) and model.preprocessing.keep_aspect
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    assert Preprocessing.from_dict({k: v for k, v in pre.to_dict().items() if k != "keep_aspect"}).keep_aspect is False


def test_bad_parameters_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="at least two blocks"):
        ENCODERS.build("signet", widths=[8])
    with pytest.raises(ConfigError, match="grid"):
        ENCODERS.build("signet", grid=[0, 2])


def test_keep_aspect_pads_with_paper_instead_of_stretching() -> None:
    ink = np.full((20, 80), 255, np.uint8)
    ink[8:12, :] = 0  # a horizontal stroke across a wide, short image
    kept = decode_image_array(ink, Preprocessing(size=(40, 40), invert=True, keep_aspect=True))[0]
    stretched = decode_image_array(ink, Preprocessing(size=(40, 40), invert=True))[0]
    # kept: the image becomes 80x80 with paper above and below -> a thin band in the middle
    assert kept[:12].max() == 0 and kept[-12:].max() == 0 and kept[20].max() > 200
    assert (stretched > 128).sum() > 2 * (kept > 128).sum()
    no_invert = decode_image_array(ink, Preprocessing(size=(40, 40), keep_aspect=True))[0]
    assert no_invert[0].max() == 0  # padding is black when not inverting (paper = 0 there too)
    rgb = np.stack([ink] * 3, -1)
    assert decode_image_array(rgb, Preprocessing(size=(40, 40), channels=3, invert=True, keep_aspect=True)).shape == (3, 40, 40)


def test_fixed_pooling_equals_adaptive_pooling_and_exports() -> None:
    torch.manual_seed(0)
    enc = ENCODERS.build("signet", input_size=40, input_width=70, widths=[4, 6, 8], grid=[3, 5], hidden=0, embedding_dim=6).eval()
    x = torch.rand(2, 1, 40, 70)
    h = enc.features(x)
    assert h.shape[-1] % 5 != 0  # a size adaptive pooling cannot export
    fixed = torch.matmul(torch.matmul(enc.pool_rows, h), enc.pool_cols)
    torch.testing.assert_close(fixed, enc.pool(h))
    assert not any(k.startswith("pool_") for k in enc.state_dict())  # checkpoints unchanged


def test_keep_aspect_off_leaves_older_fingerprints_unchanged() -> None:
    assert "keep_aspect" not in Preprocessing(size=(28, 28), invert=True).to_dict()
    assert Preprocessing(keep_aspect=True).to_dict()["keep_aspect"] is True


def _viewed(views: list[str]):
    torch.manual_seed(0)
    return ENCODERS.build("signet", input_size=30, input_width=44, widths=[4, 8, 8], grid=[1, 2], hidden=6, embedding_dim=5,
                          normalize=True, test_views=views)


def test_test_views_average_in_eval_mode_only() -> None:
    from twinshot.models.encoders import single_view

    enc = _viewed(["shift:3", "stroke:0.5", "scale:0.05"])
    x = torch.rand(3, 1, 30, 44)
    views = enc.views(x)
    assert len(views) == 1 + 4 + 2 + 2 and all(v.shape == x.shape for v in views)
    torch.testing.assert_close(views[1][:, :, :, 3:], x[:, :, :, :-3])  # moved 3 px right
    torch.testing.assert_close(views[5], x + 0.5 * (F.max_pool2d(x, 3, 1, 1) - x))  # half-way to the dilation
    enc.eval()
    with torch.no_grad():
        e = enc(x)
        single = [enc._embed(v) for v in views]
        with single_view(enc):
            one = enc(x)
    torch.testing.assert_close(e, F.normalize(torch.stack(single).mean(0), dim=1))
    torch.testing.assert_close(one, single[0])
    assert enc.test_views == ["shift:3", "stroke:0.5", "scale:0.05"]  # restored
    enc.train()
    assert enc(x).shape == (3, 5)  # training: one view (dropout aside)


def test_scale_view_matrix_is_the_identity_at_scale_one_and_zooms_about_the_centre() -> None:
    from twinshot.models.views import scale_matrix as _scale_matrix

    torch.testing.assert_close(_scale_matrix(7, 1.0), torch.eye(7))
    m = _scale_matrix(8, 2.0)
    torch.testing.assert_close(m.sum(1)[2:6], torch.ones(4))  # the middle half fills the image
    assert float(m[:, 0].sum()) == 0 and float(m[:, 7].sum()) == 0  # the borders fall outside


def test_bad_test_views_are_config_errors() -> None:
    for bad, msg in [(["blur:1"], "kind one of"), (["shift"], "kind one of"), (["shift:1.5"], "whole number"),
                     (["stroke:2"], r"\(0, 1\]"), (["scale:0.7"], r"\(0, 0.5\)"), (["scale:x"], "not a number"), ("shift:2", "list")]:
        with pytest.raises(ConfigError, match=msg):
            _viewed(bad)


def test_test_views_export_with_parity(tmp_path) -> None:
    from twinshot.export import export_model

    pre = Preprocessing(size=(30, 44), invert=True, keep_aspect=True)
    params = {"input_width": 44, "widths": [4, 8, 8], "grid": [1, 2], "hidden": 6, "embedding_dim": 5, "normalize": True,
              "test_views": ["shift:2", "stroke:0.5", "scale:0.05"]}
    torch.manual_seed(0)
    model = build_model(ModelSpec("signet", params, "euclidean", {}, pre)).eval()
    assert export_model(model, "torchscript", tmp_path / "v.pt").max_abs_diff <= 1e-4
    pytest.importorskip("onnxruntime")
    assert export_model(model, "onnx", tmp_path / "v.onnx").max_abs_diff <= 1e-4
