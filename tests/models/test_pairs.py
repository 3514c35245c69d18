"""The pair model in the encoder/head shape: pair_input embeds an image as its pixels plus
its handcrafted descriptor; the twochannel_dichotomy head fuses a 2-channel CNN and the
dichotomy transform; it saves, loads and refuses export with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from twinshot.data.images import Preprocessing
from twinshot.errors import ConfigError
from twinshot.models import ENCODERS, HEADS, ModelSpec, build_model, load_model, save_model
from twinshot.writer_dependent.handcrafted import descriptor_size, signature_descriptor

H, W = 30, 44


def _model(**head: object) -> torch.nn.Module:
    spec = ModelSpec("pair_input", {"input_width": W}, "twochannel_dichotomy", {"image_shape": [H, W], "widths": [4, 4, 4, 4, 4], **head},
                     Preprocessing(size=(H, W), invert=True, keep_aspect=True))
    torch.manual_seed(0)
    model = build_model(spec).eval()
    rng = np.random.default_rng(0)
    model.head.set_parts(rng.normal(0, 0.01, descriptor_size()), 0.5, [0.1, 2.0, -0.3, 0.5])
    return model


def test_encoder_is_pixels_then_descriptor() -> None:
    enc = ENCODERS.build("pair_input", input_size=H, input_width=W)
    x = torch.rand(3, 1, H, W)
    e = enc(x)
    assert e.shape == (3, H * W + descriptor_size()) == (3, enc.embedding_dim)
    torch.testing.assert_close(e[:, : H * W], x.flatten(1))
    np.testing.assert_allclose(e[:, H * W :].numpy(), signature_descriptor(x), rtol=0, atol=0)
    assert enc(torch.zeros(0, 1, H, W)).shape == (0, enc.embedding_dim)
    with pytest.raises(ConfigError, match="expects"):
        enc(torch.rand(1, 1, H, W + 2))
    with pytest.raises(ConfigError, match="grey"):
        ENCODERS.build("pair_input", in_channels=3)


def test_head_fuses_the_two_standardised_parts() -> None:
    model = _model()
    x = torch.rand(5, 1, H, W)
    e = model.embed(x)
    with torch.no_grad():
        a, b = model.head.parts(e[:3], e[2:5])
        torch.testing.assert_close(a, model.head.net(x[:3], x[2:5]))
        f = torch.from_numpy(signature_descriptor(x))
        torch.testing.assert_close(b, (f[:3] - f[2:5]).abs() @ model.head.lr_weight + 0.5)
        s = model.head.similarity(e[:3], e[2:5])
        torch.testing.assert_close(s, (a - 0.1) / 2.0 + (b + 0.3) / 0.5)
        model.head.set_logistic(2.0, -1.0)
        torch.testing.assert_close(model(x[:3], x[2:5]), 2.0 * s - 1.0)
        pw = model.head.pairwise_logits(e[:2], e[1:5])  # (2, 4), in chunks of 3 pairs
        model.head.batch_size = 3
        pw3 = model.head.pairwise_logits(e[:2], e[1:5])
    assert pw.shape == (2, 4)
    torch.testing.assert_close(pw, pw3)
    torch.testing.assert_close(pw[1, 0], model.head(e[1:2], e[1:2])[0])
    assert model.head.pairwise_similarity(e[:0], e).shape == (0, 5)


def test_head_bad_parameters() -> None:
    with pytest.raises(ConfigError, match="pair_input"):
        HEADS.build("twochannel_dichotomy", embedding_dim=128, image_shape=[H, W])
    with pytest.raises(ConfigError, match="5 positive widths"):
        HEADS.build("twochannel_dichotomy", image_shape=[H, W], widths=[4, 4])
    head = HEADS.build("twochannel_dichotomy", image_shape=[H, W])
    with pytest.raises(ConfigError, match="fusion"):
        head.set_parts(np.zeros(descriptor_size()), 0.0, [0, 0, 0, 1])
    with pytest.raises(ConfigError, match="expected"):
        head.similarity(torch.zeros(1, 10), torch.zeros(1, 10))


def test_symmetric_head_scores_both_orders_alike_and_survives_saving(tmp_path: Path) -> None:
    plain, sym = _model(), _model(symmetric=True)
    x = torch.rand(4, 1, H, W)
    e = sym.embed(x)
    with torch.no_grad():
        ab, ba = sym.head.similarity(e[:2], e[2:]), sym.head.similarity(e[2:], e[:2])
        torch.testing.assert_close(ab, ba)
        # the CNN part is the mean of the two orders of the same (equally seeded) net
        a_sym, _ = sym.head.parts(e[:2], e[2:])
        torch.testing.assert_close(a_sym, 0.5 * (plain.head.net(x[:2], x[2:]) + plain.head.net(x[2:], x[:2])))
        assert not torch.allclose(plain.head.similarity(e[:2], e[2:]), plain.head.similarity(e[2:], e[:2]))
    save_model(sym, tmp_path / "sym")
    back = load_model(tmp_path / "sym")
    assert back.head.symmetric
    with torch.no_grad():
        torch.testing.assert_close(back.head.similarity(e[:2], e[2:]), ab)


def test_saves_loads_and_refuses_export(tmp_path: Path) -> None:
    from twinshot.export.exporter import export_model

    model = _model()
    save_model(model, tmp_path / "m")
    back = load_model(tmp_path / "m")
    x = torch.rand(2, 1, H, W)
    with torch.no_grad():
        torch.testing.assert_close(back(x[:1], x[1:]), model(x[:1], x[1:]))
    torch.testing.assert_close(back.head.fusion, torch.tensor([0.1, 2.0, -0.3, 0.5]))
    with pytest.raises(ConfigError, match="cannot be exported"):
        export_model(back, "onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_head_contract_gradients_reach_the_cnn() -> None:
    head = HEADS.build("twochannel_dichotomy", image_shape=[H, W], widths=[4, 4, 4, 4, 4])
    e1 = torch.rand(4, H * W + descriptor_size(), requires_grad=True)
    e2 = torch.rand(4, H * W + descriptor_size(), requires_grad=True)
    logits = head(e1, e2)
    assert logits.shape == (4,)
    logits.sum().backward()
    for t in [e1.grad, e2.grad, *[p.grad for p in head.parameters()]]:
        assert t is not None and torch.isfinite(t).all()


def test_a_gallery_verifies_claims_with_the_pair_head(tmp_path: Path) -> None:
    """The gallery stores pair_input embeddings and scores a claim with the head (rule max)."""
    from twinshot.gallery import Gallery

    model = _model()
    save_model(model, tmp_path / "m")
    rng = np.random.default_rng(0)
    refs = [rng.integers(0, 256, (H, W), dtype=np.uint8) for _ in range(3)]
    with Gallery.create(tmp_path / "bank.db", tmp_path / "m") as bank:
        bank.enroll("writer1", refs)
        claim = bank.verify_claim("writer1", refs[1])
    with torch.no_grad():
        e = model.embed(model.preprocessing.to_float(torch.from_numpy(np.stack(refs))[:, None]))
        expected = model.head.pairwise_logits(e[1:2], e).max().item()
    assert claim.score == pytest.approx(expected, abs=1e-4)
