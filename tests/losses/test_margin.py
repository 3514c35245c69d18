"""ArcFace, CosFace and normalised softmax: pytorch-metric-learning as reference (value and
gradients, of the embeddings and of the class weights), hand values, and errors."""

from __future__ import annotations

import math

import pytest
import torch

from twinshot.errors import ConfigError, DataError
from twinshot.losses import LOSSES, ArcFaceLoss, CosFaceLoss, NormalizedSoftmaxLoss

pml = pytest.importorskip("pytorch_metric_learning.losses")

CASES = [
    ("arcface", {"margin": 28.6, "scale": 64.0}, lambda n, d: pml.ArcFaceLoss(n, d, margin=28.6, scale=64)),
    ("arcface", {"margin": 10.0, "scale": 16.0}, lambda n, d: pml.ArcFaceLoss(n, d, margin=10.0, scale=16)),
    ("cosface", {"margin": 0.35, "scale": 64.0}, lambda n, d: pml.CosFaceLoss(n, d, margin=0.35, scale=64)),
    ("cosface", {"margin": 0.1, "scale": 30.0}, lambda n, d: pml.CosFaceLoss(n, d, margin=0.1, scale=30)),
    ("normalized_softmax", {"temperature": 0.05}, lambda n, d: pml.NormalizedSoftmaxLoss(n, d, temperature=0.05)),
    ("normalized_softmax", {"temperature": 0.5}, lambda n, d: pml.NormalizedSoftmaxLoss(n, d, temperature=0.5)),
]


@pytest.mark.parametrize(("name", "params", "reference"), CASES)
def test_matches_pytorch_metric_learning(name: str, params: dict, reference) -> None:
    n_classes, dim = 7, 5
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, dim, generator=g, dtype=torch.float64)
    labels = torch.randint(0, n_classes, (12,), generator=g)
    ours = LOSSES.build(name, **params)
    ours.bind(n_classes, dim)
    ref = reference(n_classes, dim).double()
    with torch.no_grad():
        ref.W.copy_(torch.randn(dim, n_classes, generator=g, dtype=torch.float64))
        ours.W.data = ref.W.detach().clone()
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    mine, theirs = ours(x1, labels), ref(x2, labels)
    assert mine.item() == pytest.approx(theirs.item(), rel=1e-9, abs=1e-9)
    mine.backward()
    theirs.backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(ours.W.grad, ref.W.grad, rtol=1e-7, atol=1e-9)


def test_hand_values() -> None:
    # two classes along the axes; an embedding at 60 degrees from its class 0, 30 from class 1
    e = torch.tensor([[0.5, math.sqrt(3) / 2]], dtype=torch.float64)
    labels = torch.tensor([0])
    cos = CosFaceLoss(2, 2, margin=0.2, scale=10.0)
    cos.W.data = torch.eye(2, dtype=torch.float64)
    logits = cos.logits(e, labels)
    torch.testing.assert_close(logits, torch.tensor([[10 * (0.5 - 0.2), 10 * math.sqrt(3) / 2]], dtype=torch.float64))
    arc = ArcFaceLoss(2, 2, margin=30.0, scale=1.0)
    arc.W.data = torch.eye(2, dtype=torch.float64)
    assert arc.logits(e, labels)[0, 0].item() == pytest.approx(math.cos(math.radians(90)), abs=1e-12)
    soft = NormalizedSoftmaxLoss(2, 2, temperature=0.5)
    soft.W.data = torch.eye(2, dtype=torch.float64) * 3.0  # weight norms do not matter
    expected = -torch.log_softmax(torch.tensor([1.0, math.sqrt(3)]), 0)[0].item()
    assert soft(e, labels).item() == pytest.approx(expected, rel=1e-6)


def test_bind_and_errors() -> None:
    loss = LOSSES.build("arcface")
    with pytest.raises(ConfigError, match="bind"):
        loss(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    loss.bind(5, 4)
    w = loss.W
    loss.bind(5, 4)  # same shape: kept (the optimiser holds it)
    assert loss.W is w and loss.batch_kind == "labelled"
    with pytest.raises(DataError, match=r"\[0, 5\)"):
        loss(torch.randn(2, 4), torch.tensor([0, 5]))
    with pytest.raises(DataError, match="dimension"):
        loss(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match="margin"):
        CosFaceLoss(margin=-1)
    with pytest.raises(ConfigError, match="degrees"):
        ArcFaceLoss(margin=120)
    with pytest.raises(ConfigError, match="temperature"):
        NormalizedSoftmaxLoss(temperature=0)
    with pytest.raises(ConfigError, match="both"):
        CosFaceLoss(n_classes=3)


def test_lr_multiplier_gives_the_class_weights_their_own_group() -> None:
    from torch import nn

    from twinshot.training.config import OptimizerConfig
    from twinshot.training.optim import build_optimizer

    model = nn.Linear(3, 4)
    loss = CosFaceLoss(5, 4, lr_multiplier=10.0)
    opt = build_optimizer(OptimizerConfig(name="adam", lr=0.001), model, loss)
    assert [g["lr"] for g in opt.param_groups] == [0.001, pytest.approx(0.01)]
    assert opt.param_groups[1]["params"][0] is loss.W
    plain = build_optimizer(OptimizerConfig(name="adam", lr=0.001), model, CosFaceLoss(5, 4))
    assert len(plain.param_groups) == 1 and len(plain.param_groups[0]["params"]) == 3
    with pytest.raises(ConfigError, match="lr_multiplier"):
        ArcFaceLoss(lr_multiplier=0)
