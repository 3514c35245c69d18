"""TripletLoss: hand-computed values on tiny batches, and pytorch-metric-learning as reference."""

from __future__ import annotations

import math

import pytest
import torch

from twinshot.errors import ConfigError, DataError
from twinshot.losses import MINERS, AllTripletsMiner, BatchHardMiner, SemiHardMiner, TripletLoss

# 1-D points 0, 2, 1.5, 4.2 with labels 0, 0, 1, 1; margin 1. Distances:
# d01=2, d02=1.5, d03=4.2, d12=0.5, d13=2.2, d23=2.7. The eight valid triplets (a, p, n):
# (0,1,2) 1.5 hard | (0,1,3) 0 | (1,0,2) 2.5 hard | (1,0,3) 0.8 semi-hard
# (2,3,0) 2.2 hard | (2,3,1) 3.2 hard | (3,2,0) 0 | (3,2,1) 1.5 hard
LINE = torch.tensor([[0.0], [2.0], [1.5], [4.2]], dtype=torch.float64)
LINE_LABELS = torch.tensor([0, 0, 1, 1])


@pytest.mark.parametrize(
    ("mining", "expected"),
    [
        ("all", (1.5 + 2.5 + 0.8 + 2.2 + 3.2 + 1.5) / 6),  # mean over the 6 active triplets
        ("batch_hard", (1.5 + 2.5 + 3.2 + 1.5) / 4),  # closest negative per anchor
        ("semi_hard", 0.8),  # only (1, 0, 3)
    ],
)
def test_mined_hand_computed(mining: str, expected: float) -> None:
    loss = TripletLoss(margin=1.0, mining=mining)
    assert loss(LINE, LINE_LABELS).item() == pytest.approx(expected, abs=1e-9)


def test_batch_hard_takes_the_farthest_positive_and_skips_anchors_without_positive() -> None:
    x = torch.tensor([[0.0], [1.0], [3.0], [2.5]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1])
    # a0: farthest positive 2 (3), closest negative 3 (2.5): 3 - 2.5 + 1 = 1.5
    # a1: positive 2 (2) vs negative 3 (1.5): 1.5 ; a2: positive 0 (3) vs 3 (0.5): 3.5 ; a3 has no positive
    a, p, n = BatchHardMiner()(TripletLoss().distance.pairwise(x, x), labels)
    assert a.tolist() == [0, 1, 2] and p.tolist() == [2, 2, 0] and n.tolist() == [3, 3, 3]
    assert TripletLoss(margin=1.0, mining="batch_hard")(x, labels).item() == pytest.approx((1.5 + 1.5 + 3.5) / 3)


def test_batch_hard_averages_over_anchors_including_zero_losses() -> None:
    x = torch.tensor([[0.0], [1.0], [2.5]], dtype=torch.float64)
    # a0: 1 - 2.5 + 1 -> 0 ; a1: 1 - 1.5 + 1 = 0.5 ; a2 has no positive
    assert TripletLoss(margin=1.0, mining="batch_hard")(x, torch.tensor([0, 0, 1])).item() == pytest.approx(0.25)
    # "all" averages over the active triplets only
    assert TripletLoss(margin=1.0, mining="all")(x, torch.tensor([0, 0, 1])).item() == pytest.approx(0.5)


def test_all_miner_returns_every_valid_triplet() -> None:
    labels = torch.tensor([0, 0, 1, 1, 1])
    a, p, n = AllTripletsMiner()(torch.zeros(5, 5), labels)
    # class 0: 2 anchors x 1 positive x 3 negatives; class 1: 3 anchors x 2 positives x 2 negatives
    assert len(a) == 2 * 1 * 3 + 3 * 2 * 2
    assert bool((labels[a] == labels[p]).all() and (a != p).all() and (labels[a] != labels[n]).all())


def test_semi_hard_excludes_the_boundaries() -> None:
    # D(a,p) = 1; negatives at 1 (not farther), 1.5 (inside), 2 (at the margin: not inside)
    d = torch.tensor([[0.0, 1.0, 1.0, 1.5, 2.0]]).expand(5, 5).clone()
    labels = torch.tensor([0, 0, 1, 2, 3])
    a, p, n = SemiHardMiner(margin=1.0)(d, labels)
    assert list(zip(a.tolist(), p.tolist(), n.tolist())) == [(0, 1, 3)]


def test_explicit_triplets_hand_computed() -> None:
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    n = torch.tensor([[0.0, 2.0], [0.0, 1.0]])
    assert TripletLoss(margin=0.2)(a, p, n).item() == pytest.approx((0.0 + 2.2) / 2)
    assert TripletLoss(margin=0.2, distance="squared_euclidean")(a, p, n).item() == pytest.approx((0.0 + 8.2) / 2)
    # cosine distance: 1 - cos. a is zero -> use other anchors
    a = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[1.0, 1.0]])  # 1 - 1/sqrt2
    n = torch.tensor([[2.0, 0.0]])  # 0
    expected = (1 - 1 / math.sqrt(2)) - 0.0 + 0.2
    assert TripletLoss(margin=0.2, distance="cosine")(a, p, n).item() == pytest.approx(expected, abs=1e-6)


def test_no_valid_triplet_gives_zero_with_zero_gradients() -> None:
    e = torch.randn(4, 3, requires_grad=True)
    for mining in MINERS.names():
        loss = TripletLoss(mining=mining)(e, torch.zeros(4, dtype=torch.long))
        assert loss.item() == 0.0
        loss.backward()
        assert e.grad is not None and bool((e.grad == 0).all())


def test_gradient_finite_with_duplicate_embeddings() -> None:
    e = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    for mining in MINERS.names():
        TripletLoss(mining=mining)(e, torch.tensor([0, 0, 1, 1])).backward()
        assert torch.isfinite(e.grad).all()
        e.grad = None


def test_input_errors() -> None:
    loss = TripletLoss()
    e = torch.randn(4, 3)
    with pytest.raises(DataError, match="integer"):
        loss(e, torch.tensor([0.0, 0.0, 1.0, 1.0]))
    with pytest.raises(DataError, match="anchor, positive, negative"):
        loss(e, e)
    with pytest.raises(DataError, match=r"\(4,\)"):
        loss(e, torch.tensor([0, 1]))
    with pytest.raises(DataError, match="shapes differ"):
        loss(e, e, torch.randn(3, 3))
    with pytest.raises(DataError, match="takes"):
        loss(e)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="batch_hard"):
        TripletLoss(mining="hardest")
    with pytest.raises(ConfigError, match="squared_euclidean"):
        TripletLoss(distance="manhattan")
    with pytest.raises(ConfigError, match="margin"):
        TripletLoss(margin=-0.1)
    with pytest.raises(ConfigError, match="semi-hard"):
        TripletLoss(margin=0.0, mining="semi_hard")


# ---- pytorch-metric-learning as reference -----------------------------------------------


def _pml(mining: str, distance: str, margin: float):
    """PML's loss and miner with the same definitions (PML 2.x has no AllTripletsMiner:
    without a miner, TripletMarginLoss uses every valid triplet of the batch)."""
    from pytorch_metric_learning import distances, losses, miners, reducers

    def dist():
        if distance == "cosine":
            return distances.CosineSimilarity()  # similarity: loss relu(s_an - s_ap + m), same as 1 - cos
        return distances.LpDistance(normalize_embeddings=False, power=2 if distance == "squared_euclidean" else 1)

    miner = {
        "all": None,
        "batch_hard": miners.BatchHardMiner(distance=dist()),
        "semi_hard": miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard", distance=dist()),
    }[mining]
    reducer = reducers.MeanReducer() if mining == "batch_hard" else reducers.AvgNonZeroReducer()
    return losses.TripletMarginLoss(margin=margin, distance=dist(), reducer=reducer), miner


@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean", "cosine"])
@pytest.mark.parametrize("mining", ["all", "batch_hard", "semi_hard"])
def test_matches_pytorch_metric_learning(mining: str, distance: str) -> None:
    pytest.importorskip("pytorch_metric_learning")
    g = torch.Generator().manual_seed(7)
    margin = {"euclidean": 0.5, "squared_euclidean": 1.0, "cosine": 0.3}[distance]
    x = torch.randn(16, 6, generator=g, dtype=torch.float64) * (0.4 if distance != "cosine" else 1.0)
    labels = torch.arange(4).repeat_interleave(4)[torch.randperm(16, generator=g)]
    ours_e = x.clone().requires_grad_()
    ours = TripletLoss(margin=margin, mining=mining, distance=distance)(ours_e, labels)
    ours.backward()

    pml_loss, pml_miner = _pml(mining, distance, margin)
    ref_e = x.clone().requires_grad_()
    triplets = None if pml_miner is None else pml_miner(ref_e, labels)
    if mining == "semi_hard":
        assert len(triplets[0]) > 0, "the test data should contain semi-hard triplets"
    ref = pml_loss(ref_e, labels, triplets)
    ref.backward()
    assert ours.item() > 0
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6, abs=1e-9)
    torch.testing.assert_close(ours_e.grad, ref_e.grad, rtol=1e-5, atol=1e-8)


def test_explicit_triplets_match_pytorch_metric_learning() -> None:
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import distances, losses, reducers

    g = torch.Generator().manual_seed(3)
    a, p, n = (torch.randn(8, 5, generator=g, dtype=torch.float64) for _ in range(3))
    ours = TripletLoss(margin=1.0)(a, p, n)
    ref_loss = losses.TripletMarginLoss(
        margin=1.0, distance=distances.LpDistance(normalize_embeddings=False), reducer=reducers.MeanReducer()
    )
    idx = torch.arange(8)
    ref = ref_loss(torch.cat([a, p, n]), indices_tuple=(idx, idx + 8, idx + 16))
    assert 0 < ours.item() == pytest.approx(ref.item(), rel=1e-6)
