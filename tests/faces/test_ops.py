"""tfjs operations as face-api uses them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from twinshot.faces.ops import max_pool_same, pad_same, pad_to_square, resize_bilinear


def test_resize_bilinear_samples_like_tfjs_legacy() -> None:
    x = torch.tensor([[0.0, 10.0, 20.0, 30.0]]).view(1, 1, 1, 4)
    # out pixel j samples source j * 4 / 8 (no half-pixel offset); the last clamps
    out = resize_bilinear(x, (1, 8))
    assert out.flatten().tolist() == pytest.approx([0, 5, 10, 15, 20, 25, 30, 30])
    down = resize_bilinear(torch.arange(16.0).view(1, 1, 4, 4), (2, 2))
    assert down.flatten().tolist() == [0.0, 2.0, 8.0, 10.0]


def test_same_padding_and_pooling() -> None:
    assert pad_same(torch.zeros(1, 1, 112, 112), 3, 2).shape[-2:] == (113, 113)  # pad after only
    assert pad_same(torch.zeros(1, 1, 7, 7), 3, 1).shape[-2:] == (9, 9)
    for n in (13, 14, 207):
        x = torch.randn(1, 2, n, n + 1)
        for s in (1, 2):
            ref = F.max_pool2d(pad_same(x, 2, s, float("-inf")), 2, s)
            assert torch.equal(max_pool_same(x, 2, s), ref)


def test_pad_to_square() -> None:
    x = torch.ones(1, 1, 2, 5)
    after = pad_to_square(x, centre=False)
    assert after.shape[-2:] == (5, 5) and after[0, 0, :2].sum() == 10 and after[0, 0, 2:].sum() == 0
    centred = pad_to_square(x, centre=True)  # diff 3: round(1.5) = 2 rows after, 1 before
    assert centred[0, 0, :, 0].tolist() == [0, 1, 1, 0, 0]
