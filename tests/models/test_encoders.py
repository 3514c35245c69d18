"""Encoders: the Koch architecture exactly, the compact encoder's options, and one
contract test over every registered encoder."""

from __future__ import annotations

import pytest
import torch

from twinshot.errors import ConfigError
from twinshot.models import ENCODERS, CompactEncoder, KochEncoder


def test_koch_parameter_count_matches_the_paper() -> None:
    enc = KochEncoder()
    n = sum(p.numel() for p in enc.parameters())
    # conv 6,464 + 401,536 + 262,272 + 524,544; fc 9,216*4,096 + 4,096
    assert n == 38_947_648
    assert abs(n / 1e6 - 38.95) < 0.01


def test_koch_shapes_layer_by_layer() -> None:
    enc = KochEncoder()
    x = torch.rand(2, 1, 105, 105)
    shapes = []
    for layer in enc.features:
        x = layer(x)
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.MaxPool2d)):
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [
        (64, 96, 96), (64, 48, 48),
        (128, 42, 42), (128, 21, 21),
        (128, 18, 18), (128, 9, 9),
        (256, 6, 6),
    ]
    out = enc(torch.rand(2, 1, 105, 105))
    assert out.shape == (2, 4096)
    assert bool(((out >= 0) & (out <= 1)).all())  # sigmoid (saturates at init)


def test_koch_initialisation_follows_the_paper() -> None:
    torch.manual_seed(0)
    enc = KochEncoder()
    convs = [m for m in enc.features if isinstance(m, torch.nn.Conv2d)]
    w = torch.cat([c.weight.flatten() for c in convs])
    b = torch.cat([c.bias for c in convs])
    assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 1e-2) < 1e-3
    assert abs(b.mean().item() - 0.5) < 5e-3 and abs(b.std().item() - 1e-2) < 3e-3
    assert abs(enc.fc.weight.std().item() - 0.2) < 2e-3


def test_koch_refuses_other_input_sizes() -> None:
    with pytest.raises(ConfigError, match="105"):
        KochEncoder(input_size=28)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("pool", ["flatten", "avg"])
def test_compact_encoder_options(channels: int, pool: str) -> None:
    enc = CompactEncoder(in_channels=channels, input_size=32, widths=(8, 16), embedding_dim=24, pool=pool, normalize=True)
    out = enc(torch.rand(5, channels, 32, 32))
    assert out.shape == (5, 24) and enc.embedding_dim == 24
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)


def test_compact_encoder_without_projection_reports_its_dimension() -> None:
    enc = CompactEncoder(input_size=28)
    assert enc.embedding_dim == 64
    assert enc(torch.rand(2, 1, 28, 28)).shape == (2, 64)


def test_compact_encoder_rejects_bad_options() -> None:
    with pytest.raises(ConfigError, match="too small"):
        CompactEncoder(input_size=8, widths=(8, 8, 8, 8))
    with pytest.raises(ConfigError, match="in_channels"):
        CompactEncoder(in_channels=2)


def test_registry_rejects_unknown_names_and_parameters_listing_valid_ones() -> None:
    with pytest.raises(ConfigError, match="valid: compact, ensemble, face-resnet, koch"):
        ENCODERS.build("resnet9000")
    with pytest.raises(ConfigError, match="unknown parameter.*widht.*valid:.*widths"):
        ENCODERS.build("compact", widht=3)


SMALL = {
    "koch": {}, "face-resnet": {"pretrained": False}, "compact": {"input_size": 28, "widths": (8, 8), "embedding_dim": 16},
    "ensemble": {"input_size": 20, "members": [{"encoder": "compact", "input_size": 14, "params": {"widths": [8], "normalize": True}},
                                              {"encoder": "compact", "params": {"widths": [8], "normalize": True}}]},
}


@pytest.mark.parametrize("name", ENCODERS.names())
def test_contract_every_encoder(name: str) -> None:
    """(B, C, H, W) float -> (B, D), with embedding_dim, a backward pass and finite gradients."""
    enc = ENCODERS.build(name, **SMALL.get(name, {}))
    c, h, w = enc.input_shape
    x = torch.rand(3, c, h, w)
    out = enc(x)
    assert out.shape == (3, enc.embedding_dim)
    if not any(p.requires_grad for p in enc.parameters()):
        return  # nothing to learn (pair_input: pixels and handcrafted features)
    out.pow(2).mean().backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_compact_test_shifts_average_the_five_shifted_views_in_eval_mode_only() -> None:
    import numpy as np

    from twinshot.evaluation.tta import embed_tta
    from twinshot.models import ModelSpec, build_model

    torch.manual_seed(0)
    spec = ModelSpec(encoder="compact", encoder_params={"widths": [8, 8], "normalize": True}, head="euclidean")
    plain = build_model(spec).eval()
    shifted = build_model(ModelSpec(encoder="compact", encoder_params={"widths": [8, 8], "normalize": True, "test_shifts": True}, head="euclidean"))
    shifted.load_state_dict(plain.state_dict())
    shifted.eval()
    images = np.random.default_rng(0).integers(0, 256, (6, 1, 28, 28), dtype=np.uint8)
    expected = embed_tta(plain, images, tta="shifts")
    got = shifted.embed_images(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(got, embed_tta(plain, images), atol=1e-4)
    x = torch.rand(3, 1, 28, 28)
    plain.train()
    shifted.train()
    torch.testing.assert_close(shifted.encoder(x), plain.encoder(x))  # training sees one view


def test_single_view_turns_the_test_shifts_off_inside_the_block_only() -> None:
    from twinshot.models.encoders import single_view

    enc = CompactEncoder(widths=[8], normalize=True, test_shifts=True).eval()
    x = torch.rand(2, 1, 28, 28)
    with_shifts = enc(x)
    with single_view(enc):
        assert not enc.test_shifts
        one = enc(x)
    assert enc.test_shifts
    enc.test_shifts = False
    torch.testing.assert_close(one, enc(x))
    assert not torch.allclose(with_shifts, one)
