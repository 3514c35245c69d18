"""PrototypicalLoss: hand-computed episodes, accuracy, and input checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from twinshot.errors import ConfigError, DataError
from twinshot.losses import PrototypicalLoss

# class 0: (0,0), (2,0) -> prototype (1,0); class 1: (0,3) -> prototype (0,3)
SUPPORT = torch.tensor([[0.0, 0.0], [0.0, 3.0], [2.0, 0.0]], dtype=torch.float64)
SUPPORT_LABELS = torch.tensor([0, 1, 0])


def test_prototypes_are_class_means() -> None:
    protos = PrototypicalLoss().prototypes(SUPPORT, SUPPORT_LABELS)
    assert protos.tolist() == [[1.0, 0.0], [0.0, 3.0]]


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_squared_euclidean_hand_computed(temperature: float) -> None:
    query = torch.tensor([[1.0, 1.0]], dtype=torch.float64)  # squared distances 1 and 5
    loss = PrototypicalLoss(temperature=temperature)
    assert loss.logits(SUPPORT, SUPPORT_LABELS, query).tolist() == [[-1 / temperature, -5 / temperature]]
    value = loss(SUPPORT, SUPPORT_LABELS, query, torch.tensor([0])).item()
    assert value == pytest.approx(math.log1p(math.exp(-4 / temperature)))


def test_euclidean_hand_computed() -> None:
    query = torch.tensor([[1.0, 1.0]], dtype=torch.float64)  # distances 1 and sqrt(5)
    value = PrototypicalLoss(distance="euclidean")(SUPPORT, SUPPORT_LABELS, query, torch.tensor([1])).item()
    assert value == pytest.approx(math.log1p(math.exp(math.sqrt(5) - 1)))


def test_cosine_hand_computed() -> None:
    query = torch.tensor([[2.0, 1.0]], dtype=torch.float64)  # cos 2/sqrt5 and 1/sqrt5
    loss = PrototypicalLoss(distance="cosine", temperature=0.1)
    logits = loss.logits(SUPPORT, SUPPORT_LABELS, query)
    torch.testing.assert_close(logits, torch.tensor([[2 / math.sqrt(5) / 0.1, 1 / math.sqrt(5) / 0.1]], dtype=torch.float64))
    value = loss(SUPPORT, SUPPORT_LABELS, query, torch.tensor([0])).item()
    assert value == pytest.approx(math.log1p(math.exp(-1 / math.sqrt(5) / 0.1)))


def test_accuracy() -> None:
    query = torch.tensor([[1.0, 0.5], [0.1, 2.5], [1.5, 0.0]], dtype=torch.float64)
    loss = PrototypicalLoss()
    assert loss.accuracy(SUPPORT, SUPPORT_LABELS, query, torch.tensor([0, 1, 0])) == 1.0
    assert loss.accuracy(SUPPORT, SUPPORT_LABELS, query, torch.tensor([0, 0, 1])) == pytest.approx(1 / 3)
    value, acc = loss.loss_and_accuracy(SUPPORT, SUPPORT_LABELS, query, torch.tensor([0, 0, 1]))
    assert acc == pytest.approx(1 / 3)
    assert value.item() == pytest.approx(loss(SUPPORT, SUPPORT_LABELS, query, torch.tensor([0, 0, 1])).item())


def test_matches_cross_entropy_on_random_episode() -> None:
    g = torch.Generator().manual_seed(0)
    n_way, n_shot, n_query, dim = 5, 3, 4, 8
    support = torch.randn(n_way * n_shot, dim, generator=g, requires_grad=True)
    support_labels = torch.arange(n_way).repeat_interleave(n_shot)
    query = torch.randn(n_way * n_query, dim, generator=g)
    query_labels = torch.arange(n_way).repeat_interleave(n_query)
    protos = support.view(n_way, n_shot, dim).mean(1)
    ref = F.cross_entropy(-torch.cdist(query, protos) ** 2 / 0.5, query_labels)
    value = PrototypicalLoss(temperature=0.5)(support, support_labels, query, query_labels)
    assert value.item() == pytest.approx(ref.item(), rel=1e-5)
    value.backward()
    assert torch.isfinite(support.grad).all()


def test_input_errors() -> None:
    loss = PrototypicalLoss()
    query = torch.zeros(1, 2, dtype=torch.float64)
    with pytest.raises(DataError, match=r"cover every class.*\[1\]"):
        loss(SUPPORT, torch.tensor([0, 2, 0]), query, torch.tensor([0]))
    with pytest.raises(DataError, match="query_labels"):
        loss(SUPPORT, SUPPORT_LABELS, query, torch.tensor([2]))
    with pytest.raises(DataError, match="integer"):
        loss(SUPPORT, SUPPORT_LABELS.float(), query, torch.tensor([0]))
    with pytest.raises(DataError, match=r"\[0, n_way\)"):
        loss(SUPPORT, torch.tensor([0, 1, -1]), query, torch.tensor([0]))
    with pytest.raises(DataError, match="dimension 3"):
        loss(SUPPORT, SUPPORT_LABELS, torch.zeros(1, 3, dtype=torch.float64), torch.tensor([0]))


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="temperature"):
        PrototypicalLoss(temperature=0.0)
    with pytest.raises(ConfigError, match="valid"):
        PrototypicalLoss(distance="manhattan")
