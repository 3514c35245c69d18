"""Negative-only classes and hard (same-group) negatives in the pair and triplet samplers:
a writer's skilled forgeries are never anchors or positives, and the requested share of
negatives comes from the anchor's own group."""

from __future__ import annotations

import pytest
import torch

from twinshot.data import PairSampler, TripletSampler
from twinshot.errors import ConfigError

# 4 writers (groups), each a genuine class (even) and a forged class (odd), 6 images each.
LABELS = torch.arange(8).repeat_interleave(6)
GROUPS = torch.arange(4).repeat_interleave(2)
FORGED = torch.tensor([c % 2 == 1 for c in range(8)])


def test_triplets_use_forgeries_only_as_negatives_and_mostly_of_the_same_writer() -> None:
    s = TripletSampler(LABELS, 64, 20, seed=1, negative_only=FORGED, hard_negatives=0.75, class_groups=GROUPS)
    a, p, n = (torch.cat(x) for x in zip(*list(s)))
    ca, cp, cn = LABELS[a], LABELS[p], LABELS[n]
    assert (ca == cp).all() and (ca % 2 == 0).all() and (ca != cn).all()
    hard = GROUPS[cn] == GROUPS[ca]  # in the same group, the other class is the forgery
    assert (cn[hard] == ca[hard] + 1).all()
    assert 0.7 < hard.float().mean() < 0.85  # 0.75 hard + a few random ones from the same writer


def test_pairs_same_are_genuine_and_different_are_hard_as_asked() -> None:
    s = PairSampler(LABELS, 64, 20, seed=2, negative_only=FORGED, hard_negatives=1.0, class_groups=GROUPS)
    b = list(s)
    i1, i2, same = torch.cat([x.idx1 for x in b]), torch.cat([x.idx2 for x in b]), torch.cat([x.same for x in b])
    c1, c2 = LABELS[i1], LABELS[i2]
    assert (c1[same] == c2[same]).all() and (c1[same] % 2 == 0).all()
    assert (c1[~same] % 2 == 0).all() and (c2[~same] == c1[~same] + 1).all()
    assert same.float().mean() == 0.5


def test_state_round_trip_and_defaults_unchanged() -> None:
    s = PairSampler(LABELS, 8, 3, seed=3, negative_only=FORGED, hard_negatives=0.5, class_groups=GROUPS)
    state = s.state_dict()
    first = [b.idx2 for b in s]
    s.load_state_dict(state)
    assert all(torch.equal(x, b.idx2) for x, b in zip(first, s))
    plain, again = PairSampler(LABELS, 8, 3, seed=3), PairSampler(LABELS, 8, 3, seed=3, hard_negatives=0.0)
    assert all(torch.equal(x.idx2, y.idx2) for x, y in zip(plain, again))


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="hard_negatives must be in"):
        TripletSampler(LABELS, 4, 1, hard_negatives=1.5, class_groups=GROUPS)
    with pytest.raises(ConfigError, match="need class_groups"):
        TripletSampler(LABELS, 4, 1, hard_negatives=0.5)
