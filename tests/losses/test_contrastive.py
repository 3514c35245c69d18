"""ContrastiveLoss: hand-computed values, the bool-label guard, shapes, gradients."""

from __future__ import annotations

import pytest
import torch

from twinshot.errors import ConfigError, DataError
from twinshot.losses import ContrastiveLoss


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_same_pair_at_distance_zero_costs_nothing() -> None:
    e = t([1.0, 2.0])
    assert ContrastiveLoss()(e, e.clone(), torch.tensor([True])).item() == 0.0


def test_different_pair_at_distance_zero_costs_half_margin_squared() -> None:
    e = t([1.0, 2.0])
    assert ContrastiveLoss(margin=2.0)(e, e.clone(), torch.tensor([False])).item() == pytest.approx(0.5 * 2.0**2)


def test_different_pair_beyond_margin_costs_nothing() -> None:
    assert ContrastiveLoss(margin=1.0)(t([0.0, 0.0]), t([3.0, 4.0]), torch.tensor([False])).item() == 0.0


def test_hand_computed_batch() -> None:
    # distances 5, 0.5, 5, 0.5; margin 1
    e1 = t([0, 0], [0, 0], [0, 0], [1, 1])
    e2 = t([3, 4], [0.3, 0.4], [3, 4], [1.3, 1.4])
    same = torch.tensor([True, False, False, True])
    expected = (0.5 * 25 + 0.5 * 0.5**2 + 0.0 + 0.5 * 0.25) / 4
    assert ContrastiveLoss(margin=1.0)(e1, e2, same).item() == pytest.approx(expected)


@pytest.mark.parametrize("labels", [torch.tensor([1.0, 0.0]), torch.tensor([1, 0]), torch.tensor([1, 0], dtype=torch.uint8)])
def test_numeric_labels_are_refused(labels: torch.Tensor) -> None:
    e = torch.randn(2, 3)
    with pytest.raises(DataError, match=r"bool.*True = same class") as info:
        ContrastiveLoss()(e, e, labels)
    assert isinstance(info.value, ValueError)


def test_shape_mismatch_is_refused() -> None:
    loss = ContrastiveLoss()
    with pytest.raises(DataError, match="shapes differ"):
        loss(torch.randn(3, 4), torch.randn(3, 5), torch.ones(3, dtype=torch.bool))
    with pytest.raises(DataError, match=r"same.*\(3,\)"):
        loss(torch.randn(3, 4), torch.randn(3, 4), torch.ones(2, dtype=torch.bool))
    with pytest.raises(DataError, match=r"\(B, D\)"):
        loss(torch.randn(3), torch.randn(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(DataError, match="empty"):
        loss(torch.randn(0, 4), torch.randn(0, 4), torch.ones(0, dtype=torch.bool))
    with pytest.raises(DataError, match="torch.Tensor"):
        loss([[1.0]], torch.randn(1, 1), torch.ones(1, dtype=torch.bool))


def test_margin_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="margin"):
        ContrastiveLoss(margin=0.0)


def test_gradcheck() -> None:
    g = torch.Generator().manual_seed(0)
    e1 = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    e2 = (0.4 * torch.randn(6, 3, generator=g, dtype=torch.float64)).requires_grad_()
    same = torch.tensor([True, False, True, False, False, True])
    loss = ContrastiveLoss(margin=2.0)
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b, same), (e1, e2))


def test_gradient_is_finite_at_zero_distance() -> None:
    e1 = torch.zeros(2, 3, requires_grad=True)
    e2 = torch.zeros(2, 3, requires_grad=True)
    ContrastiveLoss()(e1, e2, torch.tensor([True, False])).backward()
    assert torch.isfinite(e1.grad).all() and torch.isfinite(e2.grad).all()


def test_gradient_pulls_same_and_pushes_different() -> None:
    e1 = t([0.0, 0.0], [0.0, 0.0]).requires_grad_()
    e2 = t([0.5, 0.0], [0.5, 0.0])
    ContrastiveLoss(margin=1.0)(e1, e2, torch.tensor([True, False])).backward()
    # d/de1 of 0.5 D^2 / B = (e1 - e2) / B ; of 0.5 (m - D)^2 / B = -(m - D) (e1 - e2) / D / B
    assert e1.grad[0].tolist() == pytest.approx([-0.25, 0.0])
    assert e1.grad[1].tolist() == pytest.approx([0.25, 0.0])
