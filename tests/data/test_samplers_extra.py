"""Mixed pair batches (``PairSampler(extra=..., extra_share=...)``): a fixed share of each
batch from an extra set of classes (other writers added to CEDAR), each part with its own
negatives; and ``extra_share = 0`` (the default) draws exactly the batches drawn before the
option existed."""

from __future__ import annotations

import hashlib

import pytest
import torch

from twinshot.data import PairSampler
from twinshot.errors import ConfigError, DataError

# 4 writers (groups), each a genuine class (even) and a forged class (odd), 6 images each,
# then 6 extra classes (8..13) in 3 groups of two (one name written by two writers).
LABELS = torch.arange(14).repeat_interleave(6)
GROUPS = torch.cat([torch.arange(4).repeat_interleave(2), torch.arange(4, 7).repeat_interleave(2)])
FORGED = torch.tensor([c < 8 and c % 2 == 1 for c in range(14)])
EXTRA = torch.arange(14) >= 8
NEG = dict(negative_only=FORGED, hard_negatives=0.5, class_groups=GROUPS)


def _digest(sampler: PairSampler) -> str:
    h = hashlib.sha256()
    for b in sampler:
        for t in b:
            h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def test_default_share_draws_the_batches_of_before() -> None:
    # Digests of the batches drawn by the sampler before extra_share existed (same arguments).
    old_labels, old_groups, old_forged = LABELS[:48], GROUPS[:8], FORGED[:8]
    before = dict(negative_only=old_forged, hard_negatives=0.5, class_groups=old_groups)
    assert _digest(PairSampler(old_labels, 16, 5, seed=4, **before)) == "7f0bfc52deaded36"
    assert _digest(PairSampler(old_labels, 16, 5, seed=4)) == "f8df0219994e3b4c"
    extra = torch.arange(8) >= 6
    assert _digest(PairSampler(old_labels, 16, 5, seed=4, **before, extra=extra)) == "7f0bfc52deaded36"
    assert _digest(PairSampler(old_labels, 16, 5, seed=4, extra=extra, extra_share=0.0)) == "f8df0219994e3b4c"
    s = PairSampler(LABELS, 16, 5, seed=4, **NEG, extra=EXTRA)
    assert "extra_share" not in s.state_dict()["config"]


@pytest.mark.parametrize("share", [0.25, 0.5])
def test_each_batch_holds_the_share_and_each_part_its_own_negatives(share: float) -> None:
    s = PairSampler(LABELS, 32, 12, seed=5, **NEG, extra=EXTRA, extra_share=share)
    for b in s:
        c1, c2 = LABELS[b.idx1], LABELS[b.idx2]
        x = EXTRA[c1]
        assert int((x & b.same).sum()) == round(16 * share) and int((x & ~b.same).sum()) == round(16 * share)
        assert (EXTRA[c2] == x).all()  # negatives stay within their part
        assert (c1[b.same] == c2[b.same]).all() and not FORGED[c1].any()
        assert (c1[~b.same] != c2[~b.same]).all()
    b = [*s]
    c1, c2 = (torch.cat([LABELS[getattr(x, k)] for x in b]) for k in ("idx1", "idx2"))
    same = torch.cat([x.same for x in b])
    main = ~same & ~EXTRA[c1]
    assert 0.4 < (c2[main] == c1[main] + 1).float().mean() < 0.75  # the writer's forgery: 0.5 + random
    xs = ~same & EXTRA[c1]
    assert 0.5 < (GROUPS[c2[xs]] == GROUPS[c1[xs]]).float().mean() < 0.85  # same name, other writer


def test_state_round_trip_and_bad_options() -> None:
    s = PairSampler(LABELS, 8, 3, seed=3, **NEG, extra=EXTRA, extra_share=0.25)
    state = s.state_dict()
    first = [b.idx2 for b in s]
    s.load_state_dict(state)
    assert all(torch.equal(x, b.idx2) for x, b in zip(first, s))
    with pytest.raises(ConfigError, match="does not match"):
        PairSampler(LABELS, 8, 3, seed=3, **NEG, extra=EXTRA).load_state_dict(state)
    with pytest.raises(ConfigError, match="extra_share must be in"):
        PairSampler(LABELS, 8, 3, extra=EXTRA, extra_share=1.0)
    with pytest.raises(DataError, match="at least 2 extra classes"):
        PairSampler(LABELS, 8, 3, extra_share=0.25)
