"""The loss registry and one contract test over every registered loss."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn

from twinshot.errors import ConfigError
from twinshot.losses import BATCH_KINDS, LOSSES, ContrastiveLoss, Loss, PairBCELoss, PrototypicalLoss, TripletLoss, bind_loss


def test_names_and_batch_kinds() -> None:
    assert LOSSES.names() == ["arcface", "bce", "contrastive", "cosface", "normalized_softmax", "prototypical", "triplet"]
    kinds = {name: LOSSES.get(name).batch_kind for name in LOSSES.names()}
    assert kinds == {
        "arcface": "labelled", "bce": "pairs", "contrastive": "pairs", "cosface": "labelled",
        "normalized_softmax": "labelled", "prototypical": "episode", "triplet": "labelled",
    }
    assert set(kinds.values()) <= set(BATCH_KINDS)
    assert LOSSES.get("contrastive") is ContrastiveLoss and LOSSES.get("bce") is PairBCELoss
    assert LOSSES.get("triplet") is TripletLoss and LOSSES.get("prototypical") is PrototypicalLoss


def test_build_with_parameters_and_errors() -> None:
    loss = LOSSES.build("triplet", margin=0.3, mining="batch_hard", distance="cosine")
    assert isinstance(loss, TripletLoss) and loss.margin == 0.3
    with pytest.raises(ConfigError, match="valid: distance, margin, mining"):
        LOSSES.build("triplet", margn=0.3)
    with pytest.raises(ConfigError, match="valid: arcface, bce, contrastive, cosface, normalized_softmax, prototypical, triplet"):
        LOSSES.build("sphereface")


def test_batch_kind_is_checked() -> None:
    with pytest.raises(TypeError, match="batch_kind"):

        class Odd(Loss):  # noqa: F841
            batch_kind = "quadruplets"


# ---- contract -------------------------------------------------------------------------

B, D = 12, 6


def _pairs_embeddings(g: torch.Generator) -> tuple[list[torch.Tensor], tuple]:
    e1, e2 = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g) * 0.3
    leaves = [e1.requires_grad_(), e2.requires_grad_()]
    return leaves, (e1, e2, torch.rand(B, generator=g) < 0.5)


def _pairs_logits(g: torch.Generator) -> tuple[list[torch.Tensor], tuple]:
    logits = (torch.randn(B, generator=g) * 3).requires_grad_()
    return [logits], (logits, torch.rand(B, generator=g) < 0.5)


def _labelled(g: torch.Generator) -> tuple[list[torch.Tensor], tuple]:
    e = (torch.randn(B, D, generator=g) * 0.2).requires_grad_()
    return [e], (e, torch.arange(B) % 3)


def _episode(g: torch.Generator) -> tuple[list[torch.Tensor], tuple]:
    n_way, n_shot, n_query = 3, 2, 2
    support = torch.randn(n_way * n_shot, D, generator=g).requires_grad_()
    query = torch.randn(n_way * n_query, D, generator=g).requires_grad_()
    labels = torch.arange(n_way)
    return [support, query], (support, labels.repeat(n_shot), query, labels.repeat(n_query))


INPUTS: dict[str, Callable[[torch.Generator], tuple[list[torch.Tensor], tuple]]] = {
    "contrastive": _pairs_embeddings,
    "bce": _pairs_logits,
    "triplet": _labelled,
    "prototypical": _episode,
    "arcface": _labelled,
    "cosface": _labelled,
    "normalized_softmax": _labelled,
}

CASES = [(name, {}) for name in LOSSES.names()] + [
    ("triplet", {"mining": m, "distance": d})
    for m in ("all", "batch_hard", "semi_hard")
    for d in ("euclidean", "squared_euclidean", "cosine")
] + [("prototypical", {"distance": d}) for d in ("euclidean", "cosine")]


def test_every_loss_has_contract_inputs() -> None:
    assert set(INPUTS) == set(LOSSES.names())


@pytest.mark.parametrize(("name", "params"), CASES, ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v.values())))
def test_contract(name: str, params: dict) -> None:
    loss = LOSSES.build(name, **params)
    assert isinstance(loss, Loss) and isinstance(loss, nn.Module)
    bind_loss(loss, 3, D)  # class-weight losses learn one column per class
    leaves, args = INPUTS[name](torch.Generator().manual_seed(0))
    value = loss(*args)
    assert value.shape == () and torch.isfinite(value)
    value.backward()
    for leaf in leaves:
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    assert any(bool((leaf.grad != 0).any()) for leaf in leaves)


def test_contract_bce_with_model_l2() -> None:
    model = nn.Sequential(nn.Linear(D, 4), nn.ReLU(), nn.Linear(4, 1))
    x = torch.randn(B, D, generator=torch.Generator().manual_seed(0))
    value = LOSSES.build("bce", l2={"0": 1e-3, "2": 1e-2})(model(x).squeeze(1), torch.arange(B) % 2 == 0, model)
    assert torch.isfinite(value)
    value.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
