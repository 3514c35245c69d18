"""Heads: values on hand-made embeddings, pairwise forms equal to the row-wise forms,
score direction (higher is more alike), and a contract test over every head."""

from __future__ import annotations

import math

import pytest
import torch

from twinshot.models import HEADS, CosineHead, EuclideanHead, WeightedL1Head


def test_euclidean_head_is_negated_distance() -> None:
    head = EuclideanHead()
    e1 = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    e2 = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    assert torch.allclose(head.similarity(e1, e2), torch.tensor([-5.0, 0.0]), atol=1e-5)
    head.set_logistic(2.0, 1.0)
    assert torch.allclose(head(e1, e2), torch.tensor([-9.0, 1.0]), atol=1e-4)


def test_cosine_head_values() -> None:
    head = CosineHead(scale=1.0, bias=0.0)
    e1 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    e2 = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    assert torch.allclose(head.similarity(e1, e2), torch.tensor([1.0, 0.0]))


def test_weighted_l1_head_is_koch_formula() -> None:
    head = WeightedL1Head(embedding_dim=3)
    with torch.no_grad():
        head.alpha.copy_(torch.tensor([1.0, -2.0, 0.5]))
        head.beta.fill_(0.25)
    e1 = torch.tensor([[1.0, 2.0, 3.0]])
    e2 = torch.tensor([[0.0, 0.0, 1.0]])
    expected = 1.0 * 1 - 2.0 * 2 + 0.5 * 2 + 0.25
    assert math.isclose(head(e1, e2).item(), expected, rel_tol=1e-6)


@pytest.mark.parametrize("name", HEADS.names())
def test_pairwise_matches_rowwise(name: str) -> None:
    torch.manual_seed(0)
    head = HEADS.build(name, embedding_dim=8)
    a, b = torch.randn(5, 8), torch.randn(7, 8)
    pair = head.pairwise_logits(a, b)
    assert pair.shape == (5, 7)
    rows = head(a.repeat_interleave(7, 0), b.repeat(5, 1)).view(5, 7)
    assert torch.allclose(pair, rows, atol=1e-4)


@pytest.mark.parametrize("name", ["euclidean", "cosine"])
def test_higher_is_more_alike(name: str) -> None:
    head = HEADS.build(name, embedding_dim=4)
    q = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    near, far = torch.tensor([[0.9, 0.1, 0.0, 0.0]]), torch.tensor([[-1.0, 0.5, 0.0, 0.0]])
    assert head.similarity(q, near) > head.similarity(q, far)


@pytest.mark.parametrize("name", HEADS.names())
def test_contract_every_head(name: str) -> None:
    head = HEADS.build(name, embedding_dim=6)
    e1 = torch.randn(4, 6, requires_grad=True)
    e2 = torch.randn(4, 6, requires_grad=True)
    logits = head(e1, e2)
    assert logits.shape == (4,)
    logits.sum().backward()
    for t in [e1.grad, e2.grad, *[p.grad for p in head.parameters()]]:
        assert t is not None and torch.isfinite(t).all()
