"""PairBCELoss: equality with BCE on probabilities, stability, and the L2 term by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from twinshot.errors import ConfigError, DataError
from twinshot.losses import PairBCELoss, regularised_weights


def test_equals_bce_on_sigmoid() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(32, generator=g, dtype=torch.float64) * 3
    same = torch.rand(32, generator=g) < 0.5
    ref = F.binary_cross_entropy(torch.sigmoid(logits), same.double())
    assert PairBCELoss()(logits, same).item() == pytest.approx(ref.item(), rel=1e-12)


def test_hand_computed() -> None:
    assert PairBCELoss()(torch.tensor([0.0]), torch.tensor([True])).item() == pytest.approx(math.log(2))
    # -log sigmoid(2) for a genuine pair, -log(1 - sigmoid(2)) for an impostor
    value = PairBCELoss()(torch.tensor([2.0, 2.0]), torch.tensor([True, False])).item()
    assert value == pytest.approx((math.log1p(math.exp(-2)) + math.log1p(math.exp(2))) / 2, rel=1e-6)


def test_stable_for_large_logits() -> None:
    logits = torch.tensor([100.0, -100.0], requires_grad=True)
    loss = PairBCELoss()(logits, torch.tensor([False, True]))
    assert loss.item() == pytest.approx(100.0)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_numeric_same_is_refused() -> None:
    with pytest.raises(DataError, match="bool"):
        PairBCELoss()(torch.zeros(2), torch.tensor([1.0, 0.0]))
    with pytest.raises(DataError, match=r"\(B,\)"):
        PairBCELoss()(torch.zeros(2, 1), torch.tensor([True, False]))


def _model() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)  # sum of squares 4
        model[0].bias.fill_(5.0)
        model[1].weight.fill_(3.0)
        model[2].weight.fill_(2.0)  # sum of squares 8
        model[2].bias.fill_(7.0)
    return model


def test_weights_exclude_biases_and_norm_layers() -> None:
    assert [n for n, _ in regularised_weights(_model())] == ["0.weight", "2.weight"]


def test_l2_float_hand_computed() -> None:
    model = _model()
    loss = PairBCELoss(l2=0.1)
    assert loss.regularisation(model).item() == pytest.approx(0.1 * (4 + 8))
    total = loss(torch.tensor([0.0]), torch.tensor([True]), model)
    assert total.item() == pytest.approx(math.log(2) + 1.2)
    total.backward()
    torch.testing.assert_close(model[0].weight.grad, 2 * 0.1 * model[0].weight.detach())
    assert model[0].bias.grad is None


def test_l2_per_layer_prefixes() -> None:
    model = _model()
    assert PairBCELoss(l2={"0": 0.1, "2": 0.01}).regularisation(model).item() == pytest.approx(0.4 + 0.08)
    assert PairBCELoss(l2={"0": 0.1}).regularisation(model).item() == pytest.approx(0.4)
    # the longest prefix wins
    assert PairBCELoss(l2={"": 1.0, "2": 0.0}).regularisation(model).item() == pytest.approx(4.0)


def test_prefixes_match_whole_components() -> None:
    model = nn.ModuleDict({"fc": nn.Linear(1, 1, bias=False), "fc2": nn.Linear(1, 1, bias=False)})
    with torch.no_grad():
        model["fc"].weight.fill_(1.0)
        model["fc2"].weight.fill_(3.0)
    assert PairBCELoss(l2={"fc": 1.0}).regularisation(model).item() == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="'f'.*match no weight"):
        PairBCELoss(l2={"f": 1.0}).regularisation(model)


def test_siamese_model_weights() -> None:
    from twinshot.models import ModelSpec, build_model

    model = build_model(ModelSpec(encoder="compact", encoder_params={"widths": (4, 4), "embedding_dim": 8}, head="weighted_l1"))
    names = [n for n, _ in regularised_weights(model)]
    assert "head.alpha" in names and "encoder.proj.weight" in names
    assert not any(n.endswith("bias") or n in ("head.scale", "head.beta") for n in names)
    assert not any(n.startswith("encoder.features.1.") for n in names)  # batch norm
    loss = PairBCELoss(l2={"encoder": 1e-3, "head.alpha": 1e-2})
    expected = sum(1e-3 * p.pow(2).sum() for n, p in model.named_parameters() if n in names and n.startswith("encoder"))
    expected = expected + 1e-2 * model.head.alpha.pow(2).sum()
    assert loss.regularisation(model).item() == pytest.approx(expected.item(), rel=1e-6)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="needs the model"):
        PairBCELoss(l2=0.1)(torch.zeros(1), torch.tensor([True]))
    with pytest.raises(ConfigError, match=">= 0"):
        PairBCELoss(l2=-1.0)
    with pytest.raises(ConfigError, match="number"):
        PairBCELoss(l2="0.1")  # type: ignore[arg-type]
