"""``ClassBalancedSampler(within_group_share=...)``: a seeded share of the P x K batches
drawn within one group (alphabet), the others from anywhere; 0 and 1 draw exactly the
batches of ``within_group=False`` and ``True``."""

from __future__ import annotations

import pytest
import torch

from twinshot.data import ClassBalancedSampler
from twinshot.errors import ConfigError

# 6 groups x 10 classes x 5 images: a P=5 batch drawn from anywhere is within one group
# by chance with probability 6 * C(10, 5) / C(60, 5) < 0.0003.
LABELS = torch.arange(60).repeat_interleave(5)
GROUPS = torch.arange(6).repeat_interleave(10)


def _make(share: float, n: int = 2000, seed: int = 3, **kw) -> ClassBalancedSampler:
    return ClassBalancedSampler(LABELS, 5, 2, n, seed=seed, class_groups=GROUPS, within_group_share=share, **kw)


def _within_share(batches: list[torch.Tensor]) -> float:
    return sum(len(GROUPS[LABELS[b]].unique()) == 1 for b in batches) / len(batches)


@pytest.mark.parametrize("share", [0.25, 0.5, 0.9])
def test_the_share_of_within_group_batches_is_respected(share: float) -> None:
    batches = list(_make(share))
    for b in batches:
        assert len(b) == 10 and len(LABELS[b].unique()) == 5  # still P x K distinct
    # binomial: 2000 batches, SE <= 0.0112, so 4 SE < 0.045
    assert abs(_within_share(batches) - share) < 0.045


def test_share_zero_and_one_are_the_plain_samplers() -> None:
    def same(a: ClassBalancedSampler, b: ClassBalancedSampler) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    plain = ClassBalancedSampler(LABELS, 5, 2, 300, seed=3, class_groups=GROUPS)
    assert same(_make(0.0, 300), plain)
    within = ClassBalancedSampler(LABELS, 5, 2, 300, seed=3, class_groups=GROUPS, within_group=True)
    assert same(_make(1.0, 300), within)
    assert _within_share(list(_make(1.0, 300))) == 1.0
    assert _within_share(list(_make(0.0, 300))) < 0.01


def test_seeded_deterministic_and_resumable() -> None:
    a, b, c = list(_make(0.5, 200)), list(_make(0.5, 200)), list(_make(0.5, 200, seed=4))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    sampler = _make(0.5, 200)
    it = iter(sampler)
    head = [next(it) for _ in range(77)]
    state = sampler.state_dict()
    resumed = _make(0.5, 200)
    resumed.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(head + list(resumed), a, strict=True))
    other = _make(0.25, 200)
    with pytest.raises(Exception, match="within_group_share"):
        other.load_state_dict(state)


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_bad_shares_are_refused(share) -> None:
    with pytest.raises(ConfigError, match="within_group_share must be a number in \\[0, 1\\]"):
        _make(share)


def test_within_group_and_a_partial_share_conflict() -> None:
    with pytest.raises(ConfigError, match="within_group=True means within_group_share=1"):
        _make(0.5, within_group=True)
    with pytest.raises(ConfigError, match="need class_groups"):
        ClassBalancedSampler(LABELS, 5, 2, 10, within_group_share=0.5)
