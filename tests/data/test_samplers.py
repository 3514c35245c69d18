"""Samplers: validity of every batch, seeding, exact resume via state_dict, too-few errors."""

from __future__ import annotations

import io
from typing import Callable

import pytest
import torch

from twinshot.data import (
    ClassBalancedSampler,
    Episode,
    EpisodeSampler,
    PairBatch,
    PairSampler,
    TripletBatch,
    TripletSampler,
)
from twinshot.errors import ConfigError, DataError


def _labels(counts: list[int]) -> torch.Tensor:
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]


LABELS = _labels([3, 5, 2, 7, 4, 6, 3, 9, 2, 5, 8, 4])  # uneven class sizes, shuffled
GROUPS = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2])

FACTORIES: dict[str, Callable[..., object]] = {
    "pairs": lambda seed, n=150: PairSampler(LABELS, 10, n, seed=seed),
    "triplets": lambda seed, n=150: TripletSampler(LABELS, 10, n, seed=seed),
    "balanced": lambda seed, n=150: ClassBalancedSampler(LABELS, 4, 2, n, seed=seed),
    "balanced_within_group": lambda seed, n=150: ClassBalancedSampler(
        LABELS, 4, 2, n, seed=seed, class_groups=GROUPS, within_group=True
    ),
    "episodes": lambda seed, n=150: EpisodeSampler(LABELS, 3, 1, 1, n, seed=seed),
    "group_episodes": lambda seed, n=150: EpisodeSampler(
        LABELS, 3, 1, 1, n, seed=seed, class_groups=GROUPS, within_group=True
    ),
}


def _flat(batch) -> torch.Tensor:
    parts = batch if isinstance(batch, tuple) else (batch,)
    return torch.cat([p.long() for p in parts])


def _run(sampler, n: int | None = None) -> list[torch.Tensor]:
    out = []
    for batch in sampler:
        out.append(_flat(batch))
        if n is not None and len(out) == n:
            break
    return out


def _equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


# ---- validity -----------------------------------------------------------------------


def test_pair_batches() -> None:
    sampler = PairSampler(LABELS, 9, 200, seed=1, same_fraction=1 / 3)
    assert len(sampler) == 200
    batches = list(sampler)
    assert len(batches) == 200
    for b in batches:
        assert isinstance(b, PairBatch) and b.same.dtype == torch.bool
        assert b.idx1.shape == b.idx2.shape == b.same.shape == (9,)
        assert int(b.same.sum()) == 3  # round(9 / 3)
        assert torch.equal(LABELS[b.idx1] == LABELS[b.idx2], b.same)
        assert not (b.same & (b.idx1 == b.idx2)).any()  # two different images
    # same pairs are spread over positions, not all first
    assert torch.stack([b.same for b in batches]).float().mean(0).min() > 0.15


def test_pair_classes_are_drawn_uniformly() -> None:
    batches = list(PairSampler(LABELS, 64, 100, seed=0))
    idx1 = torch.cat([b.idx1[b.same] for b in batches])
    freq = torch.bincount(LABELS[idx1], minlength=12).float() / len(idx1)
    assert (freq - 1 / 12).abs().max() < 0.02


def test_triplet_batches() -> None:
    for b in TripletSampler(LABELS, 16, 50, seed=2):
        assert isinstance(b, TripletBatch) and b.anchor.shape == (16,)
        assert torch.equal(LABELS[b.anchor], LABELS[b.positive])
        assert (b.anchor != b.positive).all()
        assert (LABELS[b.anchor] != LABELS[b.negative]).all()


def test_class_balanced_batches() -> None:
    for idx in ClassBalancedSampler(LABELS, 5, 2, 50, seed=3):
        assert idx.shape == (10,)
        classes = LABELS[idx].view(5, 2)
        assert (classes[:, 0] == classes[:, 1]).all()  # class by class
        assert len(classes[:, 0].unique()) == 5
        assert len(idx.unique()) == 10


@pytest.mark.parametrize(("n_way", "n_shot", "n_query"), [(3, 1, 1), (4, 2, 0), (2, 1, 1)])
def test_episodes(n_way: int, n_shot: int, n_query: int) -> None:
    for ep in EpisodeSampler(LABELS, n_way, n_shot, n_query, 50, seed=4):
        assert isinstance(ep, Episode)
        assert ep.support.shape == ep.support_labels.shape == (n_way * n_shot,)
        assert ep.query.shape == ep.query_labels.shape == (n_way * n_query,)
        assert torch.equal(ep.support_labels, torch.arange(n_way).repeat_interleave(n_shot))
        assert torch.equal(ep.query_labels, torch.arange(n_way).repeat_interleave(n_query))
        classes = LABELS[ep.support[::n_shot]]
        assert len(classes.unique()) == n_way
        assert torch.equal(LABELS[ep.support], classes[ep.support_labels])
        assert torch.equal(LABELS[ep.query], classes[ep.query_labels])
        all_idx = torch.cat([ep.support, ep.query])
        assert len(all_idx.unique()) == len(all_idx)


def test_within_group_episodes() -> None:
    sampler = EpisodeSampler(LABELS, 4, 1, 1, 300, seed=5, class_groups=GROUPS, within_group=True)
    seen_groups = set()
    for ep in sampler:
        groups = GROUPS[LABELS[ep.support]].unique()
        assert len(groups) == 1  # one alphabet per episode
        seen_groups.add(int(groups))
    assert seen_groups == {1, 2}  # group 0 has only 3 classes: never drawn for 4-way


def test_within_group_class_balanced_batches() -> None:
    sampler = ClassBalancedSampler(LABELS, 4, 2, 300, seed=5, class_groups=GROUPS, within_group=True)
    seen_groups = set()
    for batch in sampler:
        assert len(batch) == 8 and len(LABELS[batch].unique()) == 4
        groups = GROUPS[LABELS[batch]].unique()
        assert len(groups) == 1  # one alphabet per batch
        seen_groups.add(int(groups))
    assert seen_groups == {1, 2}
    with pytest.raises(DataError, match="no group has 6 classes .* \\(the largest has 5\\)"):
        ClassBalancedSampler(LABELS, 6, 2, 1, class_groups=GROUPS, within_group=True)
    with pytest.raises(ConfigError, match="within_group class-balanced batches need class_groups"):
        ClassBalancedSampler(LABELS, 3, 2, 1, within_group=True)


# ---- seeding and resume ---------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_seeded(kind: str) -> None:
    make = FACTORIES[kind]
    assert _equal(_run(make(7)), _run(make(7)))
    assert not _equal(_run(make(7)), _run(make(8)))


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_passes_continue_and_differ(kind: str) -> None:
    sampler = FACTORIES[kind](1, 20)
    first, second = _run(sampler), _run(sampler)
    assert len(first) == len(second) == 20 and not _equal(first, second)
    fresh = FACTORIES[kind](1, 20)
    assert _equal(_run(fresh) + _run(fresh), first + second)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
@pytest.mark.parametrize("stop", [0, 1, 63, 64, 70, 149, 150])
def test_state_dict_resumes_exactly(kind: str, stop: int) -> None:
    make = FACTORIES[kind]
    reference = make(11)
    expected = _run(reference) + _run(reference)  # two passes, uninterrupted

    interrupted = make(11)
    got = _run(interrupted, stop) if stop else []
    buffer = io.BytesIO()
    torch.save(interrupted.state_dict(), buffer)  # as a training checkpoint would
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    resumed = make(999)  # the seed is overridden by the state
    resumed.load_state_dict(state)
    assert resumed.position == stop
    rest = _run(resumed)  # the rest of the pass; a whole new pass if it had ended
    assert len(rest) == (150 - stop if stop < 150 else 150)
    got += rest
    if len(got) < 300:
        got += _run(resumed)  # and the next pass
    assert _equal(got, expected)


def test_state_dict_of_another_sampler_is_refused() -> None:
    state = PairSampler(LABELS, 10, 5).state_dict()
    with pytest.raises(ConfigError, match="state is for 'PairSampler', not 'TripletSampler'"):
        TripletSampler(LABELS, 10, 5).load_state_dict(state)
    with pytest.raises(ConfigError, match="batch_size=10 \\(now 12\\)"):
        PairSampler(LABELS, 12, 5).load_state_dict(state)
    with pytest.raises(ConfigError, match="labels="):
        PairSampler(LABELS.flip(0), 10, 5).load_state_dict(state)


# ---- too few images -----------------------------------------------------------------

NAMES = [f"alpha/c{c}" for c in range(12)]


def test_pairs_need_two_images_per_class() -> None:
    labels = torch.tensor([0, 0, 1, 2, 2, 3])
    with pytest.raises(DataError, match="class 'alpha/c1' has 1 image but same pairs need at least 2 per class \\(2 of 4 classes have fewer"):
        PairSampler(labels, 4, 1, class_names=NAMES)
    with pytest.raises(DataError, match="class 1 has 1 image"):
        PairSampler(labels, 4, 1)
    # only different pairs: singletons are fine
    assert len(list(PairSampler(labels, 4, 3, same_fraction=0.0))) == 3
    # or leave them out of same pairs
    for b in PairSampler(labels, 8, 20, skip_small=True):
        assert set(labels[b.idx1[b.same]].tolist()) <= {0, 2}
    with pytest.raises(DataError, match="different pairs need at least 2 classes, the labels have 1"):
        PairSampler(torch.zeros(5, dtype=torch.long), 4, 1)


def test_triplets_need_two_images_and_two_classes() -> None:
    with pytest.raises(DataError, match="class 'alpha/c2' has 1 image but triplets need at least 2"):
        TripletSampler(torch.tensor([0, 0, 1, 1, 2]), 4, 1, class_names=NAMES)
    with pytest.raises(DataError, match="triplets need at least 2 classes"):
        TripletSampler(torch.zeros(4, dtype=torch.long), 4, 1)


def test_class_balanced_needs_k_images() -> None:
    with pytest.raises(DataError, match="class 'alpha/c0' has 3 images but class-balanced batches need at least 4 per class \\(4 of 12"):
        ClassBalancedSampler(LABELS, 2, 4, 1, class_names=NAMES)
    with pytest.raises(DataError, match="batches of 13 classes need 13 classes with at least 2 images; there are 12"):
        ClassBalancedSampler(LABELS, 13, 2, 1)
    sampler = ClassBalancedSampler(LABELS, 3, 5, 10, skip_small=True)
    for idx in sampler:
        assert (torch.bincount(LABELS)[LABELS[idx]] >= 5).all()


def test_episodes_need_shot_plus_query_images() -> None:
    with pytest.raises(DataError, match="class 'alpha/c2' has 2 images but episodes of 1 shot \\+ 2 query need at least 3 per class"):
        EpisodeSampler(LABELS, 3, 1, 2, 1, class_names=NAMES)
    with pytest.raises(DataError, match="20-way episodes need 20 classes with at least 2 images; there are 12 \\(ask for 12-way or fewer\\)"):
        EpisodeSampler(LABELS, 20, 1, 1, 1)
    with pytest.raises(DataError, match="no group has 6 classes .* \\(the largest has 5\\)"):
        EpisodeSampler(LABELS, 6, 1, 1, 1, class_groups=GROUPS, within_group=True)
    with pytest.raises(ConfigError, match="within_group episodes need class_groups"):
        EpisodeSampler(LABELS, 3, 1, 1, 1, within_group=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda: PairSampler(LABELS, 0, 1),
        lambda: PairSampler(LABELS, 4, 0),
        lambda: PairSampler(LABELS, 4, 1, same_fraction=1.5),
        lambda: EpisodeSampler(LABELS, 3, 0, 1, 1),
        lambda: TripletSampler(LABELS, 4, 1, seed=1.5),
    ],
)
def test_bad_arguments(make) -> None:
    with pytest.raises(ConfigError):
        make()


def test_bad_labels() -> None:
    with pytest.raises(DataError, match="non-empty"):
        PairSampler(torch.tensor([], dtype=torch.long), 2, 1)
    with pytest.raises(DataError, match="integers"):
        PairSampler(torch.tensor([0.0, 1.0]), 2, 1)


# ---- scale ------------------------------------------------------------------------------


def test_episode_sampling_at_omniglot_scale() -> None:
    # its speed (~0.05 s for 2,000 episodes on an idle core) is measured by
    # tests/data/bench_data.py: timing belongs in benchmarks, not in tests
    labels = torch.arange(964).repeat_interleave(20)  # Omniglot background
    sampler = EpisodeSampler(labels, 20, 1, 5, 2_000, seed=0)
    assert sum(1 for _ in sampler) == 2_000
