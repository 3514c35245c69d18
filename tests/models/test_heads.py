"""Heads: values on hand-made embeddings, pairwise forms equal to the row-wise forms,
score direction (higher is more alike), and a contract test over every head."""

from __future__ import annotations

import math

import pytest
import torch

from twinshot.models import HEADS, CosineHead, EuclideanHead, WeightedL1Head

#: Heads of any embedding size (twochannel_dichotomy reads an image out of its embeddings:
#: its contract is tested in test_pairs.py).
EMBEDDING_HEADS = [n for n in HEADS.names() if n != "twochannel_dichotomy"]


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


@pytest.mark.parametrize("name", EMBEDDING_HEADS)
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


@pytest.mark.parametrize("name", EMBEDDING_HEADS)
def test_contract_every_head(name: str) -> None:
    head = HEADS.build(name, embedding_dim=6)
    e1 = torch.randn(4, 6, requires_grad=True)
    e2 = torch.randn(4, 6, requires_grad=True)
    logits = head(e1, e2)
    assert logits.shape == (4,)
    logits.sum().backward()
    for t in [e1.grad, e2.grad, *[p.grad for p in head.parameters()]]:
        assert t is not None and torch.isfinite(t).all()


def _exact_pairwise_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The float64 reference: ``|a_i - b_j|`` from exact differences."""
    return ((a.double()[:, None, :] - b.double()[None, :, :]) ** 2).sum(-1).sqrt()


def test_euclidean_pairwise_is_stable_for_near_identical_embeddings() -> None:
    # Large embeddings a hair apart: the expanded |a|^2 - 2 a.b + |b|^2 cancels in float32
    # (a distance of 1e-3 came out as 0 or as 0.06 depending on the CPU's kernels).
    g = torch.Generator().manual_seed(0)
    a = 30.0 * torch.randn(6, 128, generator=g)
    b = torch.cat([a, a + 1e-4 * torch.randn(6, 128, generator=g), 30.0 * torch.randn(4, 128, generator=g)])
    head = EuclideanHead()
    head.set_logistic(1.0, 0.0)
    got = -head.pairwise_similarity(a, b).double()
    ref = _exact_pairwise_distances(a, b)
    assert (got - ref).abs().max().item() <= 1e-6 + 1e-6 * ref.max().item()
    assert got[:, :6].diagonal().max().item() <= 1e-5  # an embedding is at distance 0 of itself
    assert torch.equal(head.pairwise_logits(a, b).diagonal(), head(a, b[:6]))  # one formula, row-wise or pairwise


def test_euclidean_pairwise_batches_under_vmap_and_has_finite_gradients() -> None:
    head = EuclideanHead()
    q = torch.randn(3, 5, 8, requires_grad=True)
    s = torch.cat([q.detach()[:, :2], torch.randn(3, 4, 8)], 1).requires_grad_()
    out = torch.func.vmap(head.pairwise_logits)(q, s)
    assert torch.allclose(out, torch.stack([head.pairwise_logits(x, y) for x, y in zip(q, s)]))
    out.sum().backward()  # self-pairs (distance 0) included
    assert torch.isfinite(q.grad).all() and torch.isfinite(s.grad).all()
    bf = head.pairwise_logits(q.detach().bfloat16(), s.detach().bfloat16())
    assert bf.dtype == torch.float32 and torch.isfinite(bf).all()
