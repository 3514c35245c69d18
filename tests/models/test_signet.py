"""The SigNet-like signature encoder: shapes on non-square input, registry, and the
aspect-keeping preprocessing it is used with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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
