"""Seeded, resumable samplers that yield index tensors into a :class:`LabelledImages`.

Every sampler takes the dataset's ``labels (N,)``, a number of batches (or episodes) per
pass and a ``seed``; all randomness comes from one ``torch.Generator`` built from that seed.
Each checks at construction that every class has enough images for the request and says
which class does not. Batches are drawn a block at a time with tensor operations, so
sampling costs next to nothing beside a forward pass.

Iterating continues from where the last iteration stopped; a pass ends after ``len(sampler)``
batches and the next pass draws new batches. ``state_dict()`` / ``load_state_dict()`` save
and restore the generator and the position, so a resumed run sees exactly the batches an
uninterrupted one would have seen.
"""

from __future__ import annotations

import hashlib
import numbers
from abc import ABC, abstractmethod
from typing import Any, Generic, Iterator, NamedTuple, Sequence, TypeVar

import torch

from twinshot.errors import ConfigError, DataError

__all__ = [
    "ClassBalancedSampler",
    "Episode",
    "EpisodeSampler",
    "PairBatch",
    "PairSampler",
    "TripletBatch",
    "TripletSampler",
]


class PairBatch(NamedTuple):
    """``B`` pairs: ``idx1 (B,)``, ``idx2 (B,)`` image indices and ``same (B,)`` bool
    (True where both images show the same class)."""

    idx1: torch.Tensor
    idx2: torch.Tensor
    same: torch.Tensor


class TripletBatch(NamedTuple):
    """``B`` triplets of image indices, each ``(B,)``: ``anchor`` and ``positive`` share a
    class, ``negative`` is from another class."""

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor


class Episode(NamedTuple):
    """One ``n_way``-way ``n_shot``-shot task.

    Attributes:
        support: ``(n_way * n_shot,)`` image indices, class by class (``n_shot`` of class 0,
            then ``n_shot`` of class 1, ...).
        support_labels: ``(n_way * n_shot,)`` episode labels in ``0..n_way-1``.
        query: ``(n_way * n_query,)`` image indices, class by class.
        query_labels: ``(n_way * n_query,)`` episode labels.
    """

    support: torch.Tensor
    support_labels: torch.Tensor
    query: torch.Tensor
    query_labels: torch.Tensor


B = TypeVar("B")


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class _ClassIndex:
    """Where each class's images are: ``order[offsets[c] : offsets[c] + counts[c]]``."""

    def __init__(self, labels: torch.Tensor, class_names: Sequence[str] | None) -> None:
        labels = torch.as_tensor(labels)
        if labels.ndim != 1 or labels.numel() == 0:
            raise DataError(f"labels must be a non-empty (N,) tensor, got shape {tuple(labels.shape)}")
        if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
            raise DataError(f"labels must be integers, got {labels.dtype}")
        labels = labels.detach().cpu().long()
        if int(labels.min()) < 0:
            raise DataError("labels must be >= 0")
        self.labels = labels
        self.order = torch.argsort(labels, stable=True)
        self.counts = torch.bincount(labels)
        self.offsets = torch.cumsum(self.counts, 0) - self.counts
        self.present = torch.nonzero(self.counts > 0).flatten()
        self.class_names = list(class_names) if class_names is not None else None
        self.fingerprint = hashlib.sha256(labels.numpy().tobytes()).hexdigest()[:16]

    def name(self, c: int) -> str:
        if self.class_names is not None and c < len(self.class_names):
            return repr(self.class_names[c])
        return str(c)

    def eligible(self, need: int, purpose: str, skip_small: bool) -> torch.Tensor:
        """Classes with at least ``need`` images; an error names the first that has fewer."""
        small = torch.nonzero((self.counts > 0) & (self.counts < need)).flatten()
        if len(small) and not skip_small:
            c = int(small[0])
            n = int(self.counts[c])
            raise DataError(
                f"class {self.name(c)} has {n} image{'s' * (n != 1)} but {purpose} need at least "
                f"{need} per class ({len(small)} of {len(self.present)} classes have fewer; "
                f"remove them or pass skip_small=True)"
            )
        return torch.nonzero(self.counts >= need).flatten()

    def key_width(self, classes: torch.Tensor, k: int) -> int:
        """Random keys per row that :meth:`distinct_positions` draws for ``classes``."""
        return int(self.counts[classes].max()) if k > 2 and len(classes) else 1

    def pick(self, classes: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Image indices: the ``positions (R, k)``-th images of ``classes (R,)``."""
        return self.order[self.offsets[classes].unsqueeze(1) + positions]

    def distinct_positions(self, classes: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
        """``(R, k)`` distinct random positions within each row's class (count >= k)."""
        counts = self.counts[classes]
        r = len(classes)
        if k == 1:
            return _uniform(r, counts, g).unsqueeze(1)
        if k == 2:
            first = _uniform(r, counts, g)
            second = _uniform(r, counts - 1, g)
            second += (second >= first).long()
            return torch.stack([first, second], 1)
        width = int(counts.max())
        keys = torch.rand(r, width, generator=g)
        keys.masked_fill_(torch.arange(width) >= counts.unsqueeze(1), 2.0)
        return keys.topk(k, dim=1, largest=False).indices


def _uniform(n: int, high: int | torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``n`` random integers in ``[0, high)`` (``high`` a scalar or an ``(n,)`` tensor)."""
    return (torch.rand(n, generator=g, dtype=torch.float64) * high).long()


def _distinct_from(candidates: torch.Tensor, rows: int, k: int, g: torch.Generator) -> torch.Tensor:
    """``(rows, k)``: in each row, ``k`` distinct members of ``candidates`` at random."""
    keys = torch.rand(rows, len(candidates), generator=g)
    return candidates[keys.topk(k, dim=1).indices]


class _Negatives:
    """How negatives are drawn for anchors of given classes (pairs and triplets).

    ``negative_only (n_classes,)`` bool marks classes whose images serve only as negatives
    (a writer's skilled forgeries): they are never anchors or positives. With
    ``hard_fraction > 0`` and ``class_groups``, that share of negatives comes from another
    class of the anchor's group (uniformly; the writer's forgeries when the group is a
    writer), the rest from any other class; anchors whose group has no other class fall
    back to any other class.
    """

    def __init__(
        self,
        index: _ClassIndex,
        negative_only: torch.Tensor | None,
        hard_fraction: float,
        class_groups: torch.Tensor | None,
    ) -> None:
        if not 0.0 <= float(hard_fraction) <= 1.0:
            raise ConfigError(f"hard_negatives must be in [0, 1], got {hard_fraction}")
        self.hard_fraction = float(hard_fraction)
        n = len(index.counts)
        mask = torch.zeros(n, dtype=torch.bool)
        if negative_only is not None:
            given = torch.as_tensor(negative_only, dtype=torch.bool).flatten()
            mask[: min(n, len(given))] = given[:n]
        self.negative_only = mask
        self.any = bool(mask.any())
        self.classes = index.present
        self.hard: torch.Tensor | None = None  # (n_classes, width) same-group classes, -1 padded
        if self.hard_fraction > 0:
            if class_groups is None:
                raise ConfigError("hard_negatives need class_groups (e.g. writers as groups)")
            groups = torch.as_tensor(class_groups).long().flatten()
            if len(groups) < n:
                raise DataError(f"class_groups has {len(groups)} entries but the labels go up to {n - 1}")
            present = index.present
            rows = [present[(groups[present] == groups[c]) & (present != c)] for c in range(n)]
            width = max(1, max(len(r) for r in rows))
            self.hard = torch.full((n, width), -1, dtype=torch.long)
            for c, r in enumerate(rows):
                self.hard[c, : len(r)] = r
            self.n_hard = (self.hard >= 0).sum(1)

    def anchors(self, classes: torch.Tensor) -> torch.Tensor:
        """``classes`` without the negative-only ones."""
        return classes[~self.negative_only[classes]] if self.any else classes

    def config(self) -> dict[str, Any]:
        """What changes the draws (for the sampler's state check); empty when unused."""
        if not self.any and self.hard_fraction == 0:
            return {}
        return {"negative_only": int(self.negative_only.sum()), "hard_negatives": self.hard_fraction}

    def draw(self, anchor_classes: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """A negative class ``(M,)`` for each of ``anchor_classes (M,)``: another present class."""
        m = len(anchor_classes)
        k = len(self.classes)
        rank = torch.searchsorted(self.classes, anchor_classes)
        other = _uniform(m, k - 1, g)
        other += (other >= rank).long()
        neg = self.classes[other]
        if self.hard is not None:
            n_hard = self.n_hard[anchor_classes]
            take = (torch.rand(m, generator=g) < self.hard_fraction) & (n_hard > 0)
            pos = _uniform(m, n_hard.clamp(min=1), g)
            hard = self.hard[anchor_classes, pos]
            neg = torch.where(take, hard, neg)
        return neg


class _BlockSampler(ABC, Generic[B]):
    """Draws ``batches`` batches per pass, ``block_batches`` at a time, from one generator.

    Resumable: the state is the generator's state at the start of the current block, the
    block's first batch and the position in the pass.
    """

    #: Most batches drawn at once.
    max_block_batches = 64
    #: Most random keys drawn for one block: small enough that no tensor op is split over
    #: torch's threads, which wait on each other badly on a busy machine.
    block_elements = 16384

    def __init__(self, batches: int, seed: int) -> None:
        self.batches = _positive_int("batches", batches)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        self.seed = seed = int(seed)
        self._generator = torch.Generator().manual_seed(seed)
        self._block_state = self._generator.get_state()
        self._block_start = 0
        self._position = 0
        self._block: list[B] | None = None
        self._next_state: torch.Tensor | None = None

    @abstractmethod
    def _sample_block(self, n: int, g: torch.Generator) -> list[B]:
        """Draw ``n`` batches from ``g``."""

    @abstractmethod
    def _config(self) -> dict[str, Any]:
        """What must match for a saved state to be loaded."""

    def _batch_elements(self) -> int:
        """About how many random keys one batch needs (sets the block size)."""
        return 1

    @property
    def block_batches(self) -> int:
        """Batches drawn at once: a function of the arguments only, so resuming is exact."""
        return max(1, min(self.max_block_batches, self.block_elements // max(1, self._batch_elements())))

    def __len__(self) -> int:
        return self.batches

    def _current_block(self) -> list[B]:
        if self._block is None:
            self._generator.set_state(self._block_state)
            n = min(self.block_batches, self.batches - self._block_start)
            self._block = self._sample_block(n, self._generator)
            self._next_state = self._generator.get_state()
        return self._block

    def _advance_block(self) -> None:
        block = self._current_block()
        assert self._next_state is not None
        self._block_start += len(block)
        self._block_state = self._next_state
        self._block = None

    def __iter__(self) -> Iterator[B]:
        """Yield the rest of the current pass (a whole new pass if the last one ended)."""
        if self._position >= self.batches:
            while self._block_start < self.batches:
                self._advance_block()
            self._block_start = self._position = 0
        while self._position < self.batches:
            block = self._current_block()
            i = self._position - self._block_start
            if i >= len(block):
                self._advance_block()
                continue
            self._position += 1
            yield block[i]

    @property
    def position(self) -> int:
        """Batches already yielded in the current pass."""
        return self._position

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this sampler is now."""
        return {
            "sampler": type(self).__name__,
            "config": {**self._config(), "block_batches": self.block_batches},
            "generator": self._block_state.clone(),
            "block_start": self._block_start,
            "position": self._position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` of a sampler built with the same arguments."""
        name = state.get("sampler")
        if name != type(self).__name__:
            raise ConfigError(f"sampler state is for {name!r}, not {type(self).__name__!r}")
        mine = {**self._config(), "block_batches": self.block_batches}
        theirs = state.get("config", {})
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if diff:
            raise ConfigError(
                f"{type(self).__name__} state does not match this sampler: "
                + ", ".join(f"{k}={theirs.get(k)!r} (now {mine.get(k)!r})" for k in diff)
            )
        block_start, position = int(state["block_start"]), int(state["position"])
        if not 0 <= block_start <= position <= self.batches:
            raise ConfigError(f"sampler state has an invalid position {position}")
        self._block_state = torch.as_tensor(state["generator"], dtype=torch.uint8).clone()
        self._block_start = block_start
        self._position = position
        self._block = None
        self._next_state = None


class PairSampler(_BlockSampler[PairBatch]):
    """Balanced batches of same-class and different-class pairs.

    Same pairs: a class chosen uniformly among those with >= 2 images, then two distinct
    images of it. Different pairs: two distinct classes chosen uniformly, one image each.
    Each batch holds ``round(batch_size * same_fraction)`` same pairs, in random order.

    Args:
        labels: ``(N,)`` class of each image.
        batch_size: pairs per batch (``B``).
        batches: batches per pass.
        seed: seeds the generator.
        same_fraction: the share of same pairs in each batch.
        class_names: names used in error messages (optional).
        skip_small: leave classes with a single image out of same pairs instead of raising.
        negative_only: ``(n_classes,)`` bool, classes used only as the second image of
            different pairs (a writer's skilled forgeries), never in same pairs.
        hard_negatives: share of different pairs whose second class is another class of
            the first one's group (``class_groups``): a writer's forgeries for that writer.
        class_groups: ``(n_classes,)`` group of each class (for ``hard_negatives``).
        extra: ``(n_classes,)`` bool, classes of a second, extra set (other writers added
            to the training part); used only with ``extra_share > 0``.
        extra_share: share of each batch's same pairs and of its different pairs whose
            first class is an ``extra`` class; those pairs take their negatives among the
            extra classes, the others among the rest only (each part keeps its own
            ``hard_negatives``). 0 (the default): first classes uniform over all classes,
            as without ``extra``.
    """

    def __init__(
        self,
        labels: torch.Tensor,
        batch_size: int,
        batches: int,
        seed: int = 0,
        same_fraction: float = 0.5,
        *,
        class_names: Sequence[str] | None = None,
        skip_small: bool = False,
        negative_only: torch.Tensor | None = None,
        hard_negatives: float = 0.0,
        class_groups: torch.Tensor | None = None,
        extra: torch.Tensor | None = None,
        extra_share: float = 0.0,
    ) -> None:
        super().__init__(batches, seed)
        self.batch_size = _positive_int("batch_size", batch_size)
        if not 0.0 <= float(same_fraction) <= 1.0:
            raise ConfigError(f"same_fraction must be in [0, 1], got {same_fraction}")
        self.same_fraction = float(same_fraction)
        self.n_same = round(self.batch_size * self.same_fraction)
        self.n_different = self.batch_size - self.n_same
        self._index = _ClassIndex(labels, class_names)
        self._negatives = _Negatives(self._index, negative_only, hard_negatives, class_groups)
        self._same_classes = self._negatives.anchors(
            self._index.eligible(2, "same pairs", skip_small) if self.n_same else self._index.present
        )
        if self.n_same and len(self._same_classes) == 0:
            raise DataError("no class has 2 images, so no same pairs can be drawn")
        self._classes = self._index.present
        if self.n_different and len(self._classes) < 2:
            raise DataError(
                f"different pairs need at least 2 classes, the labels have {len(self._classes)}"
            )
        if not 0.0 <= float(extra_share) < 1.0:
            raise ConfigError(f"extra_share must be in [0, 1), got {extra_share}")
        self.extra_share = float(extra_share)
        self._parts: list[_Part] = []
        if self.extra_share > 0:
            self._parts = _split_parts(
                self._index, extra, self.extra_share, self.n_same, self.n_different,
                self._same_classes, negative_only, hard_negatives, class_groups,
            )

    def _config(self) -> dict[str, Any]:
        mixed = {"extra_share": self.extra_share, "extra_classes": len(self._parts[1].classes)} if self._parts else {}
        return {
            "labels": self._index.fingerprint,
            "batch_size": self.batch_size,
            "batches": self.batches,
            "same_fraction": self.same_fraction,
            "same_classes": len(self._same_classes),
            **self._negatives.config(),
            **mixed,
        }

    def _batch_elements(self) -> int:
        return 2 * self.batch_size

    def _sample_block(self, n: int, g: torch.Generator) -> list[PairBatch]:
        idx = self._index
        parts1, parts2 = [], []
        if self._parts:
            for part in self._parts:
                part.sample(idx, n, g, parts1, parts2)
            same = torch.cat([torch.ones(n, p.n_same, dtype=torch.bool) for p in self._parts]
                             + [torch.zeros(n, p.n_different, dtype=torch.bool) for p in self._parts], 1)
            return self._shuffled(torch.cat(parts1[0::2] + parts1[1::2], 1), torch.cat(parts2[0::2] + parts2[1::2], 1), same, g)
        if self.n_same:
            _same_pairs(idx, self._same_classes, n, self.n_same, g, parts1, parts2)
        if self.n_different and (self._negatives.any or self._negatives.hard is not None):
            _different_pairs(idx, self._negatives, self._classes, n, self.n_different, g, parts1, parts2)
        elif self.n_different:
            m = n * self.n_different
            k = len(self._classes)
            first = _uniform(m, k, g)
            second = _uniform(m, k - 1, g)
            second += (second >= first).long()
            c1, c2 = self._classes[first], self._classes[second]
            parts1.append(idx.pick(c1, idx.distinct_positions(c1, 1, g)).view(n, self.n_different))
            parts2.append(idx.pick(c2, idx.distinct_positions(c2, 1, g)).view(n, self.n_different))
        same = torch.zeros(n, self.batch_size, dtype=torch.bool)
        same[:, : self.n_same] = True
        return self._shuffled(torch.cat(parts1, 1), torch.cat(parts2, 1), same, g)

    def _shuffled(self, idx1: torch.Tensor, idx2: torch.Tensor, same: torch.Tensor, g: torch.Generator) -> list[PairBatch]:
        """``(n, batch_size)`` pairs and labels, each row in a random order, as batches."""
        perm = torch.rand(len(idx1), self.batch_size, generator=g).argsort(dim=1)
        idx1, idx2, same = idx1.gather(1, perm), idx2.gather(1, perm), same.gather(1, perm)
        return [PairBatch(idx1[i], idx2[i], same[i]) for i in range(len(idx1))]


class _PartIndex(NamedTuple):
    """The part of a :class:`_ClassIndex` that :class:`_Negatives` reads, restricted to
    some classes: ``counts (n_classes,)`` of the whole index, ``present`` of the part."""

    counts: torch.Tensor
    present: torch.Tensor


class _Part:
    """One part of a mixed pair batch (:class:`PairSampler` with ``extra_share``): its
    same pairs and its different pairs, negatives drawn within the part."""

    def __init__(self, same_classes: torch.Tensor, classes: torch.Tensor, negatives: _Negatives, n_same: int, n_different: int) -> None:
        self.same_classes, self.classes, self.negatives = same_classes, classes, negatives
        self.n_same, self.n_different = n_same, n_different

    def sample(self, idx: _ClassIndex, n: int, g: torch.Generator, out1: list[torch.Tensor], out2: list[torch.Tensor]) -> None:
        """Append ``(n, n_same)`` same pairs, then ``(n, n_different)`` different pairs."""
        _same_pairs(idx, self.same_classes, n, self.n_same, g, out1, out2)
        _different_pairs(idx, self.negatives, self.classes, n, self.n_different, g, out1, out2)


def _same_pairs(
    idx: _ClassIndex, pool: torch.Tensor, n: int, k: int, g: torch.Generator,
    out1: list[torch.Tensor], out2: list[torch.Tensor],
) -> None:
    """Append ``(n, k)`` first and second images of same pairs, classes uniform over ``pool``."""
    classes = pool[_uniform(n * k, len(pool), g)]
    picks = idx.pick(classes, idx.distinct_positions(classes, 2, g)) if n * k else torch.zeros(0, 2, dtype=torch.long)
    out1.append(picks[:, 0].reshape(n, k))
    out2.append(picks[:, 1].reshape(n, k))


def _different_pairs(
    idx: _ClassIndex, negatives: _Negatives, classes: torch.Tensor, n: int, k: int, g: torch.Generator,
    out1: list[torch.Tensor], out2: list[torch.Tensor],
) -> None:
    """Append ``(n, k)`` images of anchors drawn from ``classes`` and of their negatives."""
    refs = negatives.anchors(classes)
    c1 = refs[_uniform(n * k, len(refs), g)]
    c2 = negatives.draw(c1, g)
    out1.append(idx.pick(c1, idx.distinct_positions(c1, 1, g)).reshape(n, k))
    out2.append(idx.pick(c2, idx.distinct_positions(c2, 1, g)).reshape(n, k))


def _split_parts(
    index: _ClassIndex,
    extra: torch.Tensor | None,
    share: float,
    n_same: int,
    n_different: int,
    same_classes: torch.Tensor,
    negative_only: torch.Tensor | None,
    hard_negatives: float,
    class_groups: torch.Tensor | None,
) -> list[_Part]:
    """The main part and the extra part of a mixed pair batch, ``[main, extra]``."""
    n = len(index.counts)
    mask = torch.zeros(n, dtype=torch.bool)
    if extra is not None:
        given = torch.as_tensor(extra, dtype=torch.bool).flatten()
        mask[: min(n, len(given))] = given[:n]
    parts = []
    for is_extra, k_same, k_diff in (
        (False, n_same - round(n_same * share), n_different - round(n_different * share)),
        (True, round(n_same * share), round(n_different * share)),
    ):
        classes = index.present[mask[index.present] == is_extra]
        what = "extra" if is_extra else "main (not extra)"
        if len(classes) < 2:
            raise DataError(f"extra_share needs at least 2 {what} classes, the labels have {len(classes)}")
        negatives = _Negatives(_PartIndex(index.counts, classes), negative_only, hard_negatives, class_groups)  # type: ignore[arg-type]
        same = same_classes[mask[same_classes] == is_extra]
        if k_same and len(same) == 0:
            raise DataError(f"no {what} class has 2 images, so no same pairs can be drawn from it")
        if len(negatives.anchors(classes)) == 0:
            raise DataError(f"every {what} class is negative-only: no different pairs can be drawn from it")
        parts.append(_Part(same, classes, negatives, k_same, k_diff))
    return parts


class TripletSampler(_BlockSampler[TripletBatch]):
    """Batches of (anchor, positive, negative) image indices.

    The anchor's class is chosen uniformly among classes with >= 2 images; the positive is
    another image of it; the negative is one image of a different class chosen uniformly.

    Args:
        labels: ``(N,)`` class of each image.
        batch_size: triplets per batch (``B``).
        batches: batches per pass.
        seed: seeds the generator.
        class_names: names used in error messages (optional).
        skip_small: leave single-image classes out of anchors instead of raising.
        negative_only: ``(n_classes,)`` bool, classes used only as negatives (never anchors).
        hard_negatives: share of negatives drawn from another class of the anchor's group
            (``class_groups``): a writer's skilled forgeries for that writer.
        class_groups: ``(n_classes,)`` group of each class (for ``hard_negatives``).
    """

    def __init__(
        self,
        labels: torch.Tensor,
        batch_size: int,
        batches: int,
        seed: int = 0,
        *,
        class_names: Sequence[str] | None = None,
        skip_small: bool = False,
        negative_only: torch.Tensor | None = None,
        hard_negatives: float = 0.0,
        class_groups: torch.Tensor | None = None,
    ) -> None:
        super().__init__(batches, seed)
        self.batch_size = _positive_int("batch_size", batch_size)
        self._index = _ClassIndex(labels, class_names)
        self._negatives = _Negatives(self._index, negative_only, hard_negatives, class_groups)
        self._anchor_classes = self._negatives.anchors(self._index.eligible(2, "triplets", skip_small))
        self._classes = self._index.present
        if len(self._anchor_classes) == 0:
            raise DataError("no class has 2 images, so no anchor-positive pair can be drawn")
        if len(self._classes) < 2:
            raise DataError(f"triplets need at least 2 classes, the labels have {len(self._classes)}")

    def _config(self) -> dict[str, Any]:
        return {
            "labels": self._index.fingerprint,
            "batch_size": self.batch_size,
            "batches": self.batches,
            "anchor_classes": len(self._anchor_classes),
            **self._negatives.config(),
        }

    def _batch_elements(self) -> int:
        return 2 * self.batch_size

    def _sample_block(self, n: int, g: torch.Generator) -> list[TripletBatch]:
        idx = self._index
        m = n * self.batch_size
        anchor_classes = self._anchor_classes[_uniform(m, len(self._anchor_classes), g)]
        ap = idx.pick(anchor_classes, idx.distinct_positions(anchor_classes, 2, g))
        if self._negatives.any or self._negatives.hard is not None:
            neg_classes = self._negatives.draw(anchor_classes, g)
        else:
            # A different class: shift a draw from the k - 1 others past the anchor's rank.
            k = len(self._classes)
            rank = torch.searchsorted(self._classes, anchor_classes)
            other = _uniform(m, k - 1, g)
            other += (other >= rank).long()
            neg_classes = self._classes[other]
        neg = idx.pick(neg_classes, idx.distinct_positions(neg_classes, 1, g)).view(n, -1)
        anchor, positive = ap[:, 0].view(n, -1), ap[:, 1].view(n, -1)
        return [TripletBatch(anchor[i], positive[i], neg[i]) for i in range(n)]


def _eligible_groups(
    class_groups: torch.Tensor | None, classes: torch.Tensor, n_labels: int, per_batch: int, what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """For within-group sampling: the groups with at least ``per_batch`` of ``classes``, and
    the group of each of ``classes``."""
    if class_groups is None:
        raise ConfigError(f"within_group {what} need class_groups")
    class_groups = torch.as_tensor(class_groups).long().flatten()
    if len(class_groups) < n_labels:
        raise DataError(f"class_groups has {len(class_groups)} entries but the labels go up to {n_labels - 1}")
    group_of = class_groups[classes]
    groups, sizes = torch.unique(group_of, return_counts=True)
    eligible = groups[sizes >= per_batch]
    if len(eligible) == 0:
        raise DataError(
            f"no group has {per_batch} classes with enough images for within-group {what} "
            f"(the largest has {int(sizes.max())})"
        )
    return eligible, group_of


def _classes_within_groups(
    classes: torch.Tensor, groups: torch.Tensor, group_of: torch.Tensor, n: int, w: int, g: torch.Generator
) -> torch.Tensor:
    """``(n, w)`` distinct classes per row, all of one group drawn uniformly per row."""
    group = groups[_uniform(n, len(groups), g)]
    keys = torch.rand(n, len(classes), generator=g)
    keys.masked_fill_(group_of.unsqueeze(0) != group.unsqueeze(1), -1.0)
    return classes[keys.topk(w, dim=1).indices]


class ClassBalancedSampler(_BlockSampler[torch.Tensor]):
    """Batches of ``n_classes`` distinct classes x ``n_per_class`` distinct images each
    (the "P x K" batches of online-mined triplet losses).

    Yields ``idx (n_classes * n_per_class,)``, class by class.

    Args:
        labels: ``(N,)`` class of each image.
        n_classes: classes per batch (``P``).
        n_per_class: images per class (``K``).
        batches: batches per pass.
        seed: seeds the generator.
        class_names: names used in error messages (optional).
        skip_small: leave classes with fewer than ``n_per_class`` images out instead of raising.
        class_groups: ``(n_classes,)`` group of each class; needed for ``within_group``.
        within_group: draw all classes of a batch from one group (drawn uniformly among the
            groups with at least ``n_classes`` classes): the negatives a mining loss finds
            are then the confusable ones of within-alphabet tests. The same as
            ``within_group_share=1``.
        within_group_share: the share of batches drawn within one group, in ``[0, 1]``:
            each batch is within a group with this probability (seeded), else its classes
            come from anywhere. ``0`` (the default) and ``1`` draw exactly the batches of
            ``within_group=False`` and ``True``.
    """

    def __init__(
        self,
        labels: torch.Tensor,
        n_classes: int,
        n_per_class: int,
        batches: int,
        seed: int = 0,
        *,
        class_names: Sequence[str] | None = None,
        skip_small: bool = False,
        class_groups: torch.Tensor | None = None,
        within_group: bool = False,
        within_group_share: float = 0.0,
    ) -> None:
        super().__init__(batches, seed)
        self.n_classes = _positive_int("n_classes", n_classes)
        share = within_group_share
        if isinstance(share, bool) or not isinstance(share, numbers.Real) or not 0.0 <= float(share) <= 1.0:
            raise ConfigError(f"within_group_share must be a number in [0, 1], got {share!r}")
        if within_group and float(share) not in (0.0, 1.0):
            raise ConfigError(
                f"within_group=True means within_group_share=1; got within_group_share={share} as well (give one of them)"
            )
        self.within_group_share = 1.0 if within_group else float(share)
        self.n_per_class = _positive_int("n_per_class", n_per_class)
        self._index = _ClassIndex(labels, class_names)
        self._classes = self._index.eligible(
            self.n_per_class, "class-balanced batches", skip_small
        )
        if len(self._classes) < self.n_classes:
            raise DataError(
                f"batches of {self.n_classes} classes need {self.n_classes} classes with at least "
                f"{self.n_per_class} images; there are {len(self._classes)}"
            )
        self.within_group = self.within_group_share == 1.0
        self._groups: torch.Tensor | None = None
        self._class_group: torch.Tensor | None = None
        if self.within_group_share > 0:
            self._groups, self._class_group = _eligible_groups(
                class_groups, self._classes, len(self._index.counts), self.n_classes, "class-balanced batches"
            )

    def _config(self) -> dict[str, Any]:
        config = {
            "labels": self._index.fingerprint,
            "n_classes": self.n_classes,
            "n_per_class": self.n_per_class,
            "batches": self.batches,
            "classes": len(self._classes),
        }
        if self.within_group:  # only then, so states saved before the option still load
            config.update(within_group=True, groups=None if self._groups is None else len(self._groups))
        elif self.within_group_share > 0:
            config.update(within_group_share=self.within_group_share, groups=None if self._groups is None else len(self._groups))
        return config

    def _batch_elements(self) -> int:
        return max(len(self._classes), self.n_classes * self._index.key_width(self._classes, self.n_per_class))

    def _sample_block(self, n: int, g: torch.Generator) -> list[torch.Tensor]:
        if self._groups is None:
            classes = _distinct_from(self._classes, n, self.n_classes, g).flatten()
        elif self.within_group:
            assert self._class_group is not None
            classes = _classes_within_groups(self._classes, self._groups, self._class_group, n, self.n_classes, g).flatten()
        else:  # a seeded share of the batches within one group, the others from anywhere
            assert self._class_group is not None
            within = torch.rand(n, generator=g) < self.within_group_share
            rows = torch.empty(n, self.n_classes, dtype=torch.long)
            k = int(within.sum())
            if k < n:
                rows[~within] = _distinct_from(self._classes, n - k, self.n_classes, g)
            if k:
                rows[within] = _classes_within_groups(self._classes, self._groups, self._class_group, k, self.n_classes, g)
            classes = rows.flatten()
        picks = self._index.pick(classes, self._index.distinct_positions(classes, self.n_per_class, g))
        return list(picks.view(n, -1))


class EpisodeSampler(_BlockSampler[Episode]):
    """``n_way``-way ``n_shot``-shot episodes with ``n_query`` queries per class.

    Each episode draws ``n_way`` distinct classes uniformly, then ``n_shot + n_query``
    distinct images of each; episode labels are ``0..n_way-1`` in the order drawn.
    With ``within_group=True`` it first draws a group uniformly among those with at least
    ``n_way`` classes (Omniglot's within-alphabet episodes), then the classes from it.

    Args:
        labels: ``(N,)`` class of each image.
        n_way, n_shot, n_query: classes per episode, support and query images per class.
        episodes: episodes per pass.
        seed: seeds the generator.
        class_groups: ``(n_classes,)`` group of each class; needed for ``within_group``.
        within_group: draw all classes of an episode from one group.
        class_names: names used in error messages (optional).
        skip_small: leave classes with fewer than ``n_shot + n_query`` images out instead of
            raising.
    """

    def __init__(
        self,
        labels: torch.Tensor,
        n_way: int,
        n_shot: int,
        n_query: int,
        episodes: int,
        seed: int = 0,
        class_groups: torch.Tensor | None = None,
        within_group: bool = False,
        *,
        class_names: Sequence[str] | None = None,
        skip_small: bool = False,
    ) -> None:
        super().__init__(episodes, seed)
        self.n_way = _positive_int("n_way", n_way)
        self.n_shot = _positive_int("n_shot", n_shot)
        self.n_query = _positive_int("n_query", n_query, minimum=0)
        self.within_group = bool(within_group)
        self._index = _ClassIndex(labels, class_names)
        need = self.n_shot + self.n_query
        self._classes = self._index.eligible(
            need, f"episodes of {self.n_shot} shot + {self.n_query} query", skip_small
        )
        if len(self._classes) < self.n_way:
            raise DataError(
                f"{self.n_way}-way episodes need {self.n_way} classes with at least {need} images; "
                f"there are {len(self._classes)}"
                + (f" (ask for {len(self._classes)}-way or fewer)" if len(self._classes) >= 2 else "")
            )
        self._groups: torch.Tensor | None = None
        self._class_group: torch.Tensor | None = None
        if self.within_group:
            self._groups, self._class_group = _eligible_groups(
                class_groups, self._classes, len(self._index.counts), self.n_way, "episodes"
            )

    def _config(self) -> dict[str, Any]:
        return {
            "labels": self._index.fingerprint,
            "n_way": self.n_way,
            "n_shot": self.n_shot,
            "n_query": self.n_query,
            "episodes": self.batches,
            "within_group": self.within_group,
            "classes": len(self._classes),
            "groups": None if self._groups is None else len(self._groups),
        }

    def _batch_elements(self) -> int:
        width = self._index.key_width(self._classes, self.n_shot + self.n_query)
        return max(len(self._classes), self.n_way * width)

    def _sample_block(self, n: int, g: torch.Generator) -> list[Episode]:
        w, s, q = self.n_way, self.n_shot, self.n_query
        if self._groups is None:
            classes = _distinct_from(self._classes, n, w, g)
        else:
            assert self._class_group is not None
            classes = _classes_within_groups(self._classes, self._groups, self._class_group, n, w, g)
        flat = classes.flatten()
        picks = self._index.pick(flat, self._index.distinct_positions(flat, s + q, g)).view(n, w, s + q)
        support = picks[:, :, :s].reshape(n, w * s)
        query = picks[:, :, s:].reshape(n, w * q)
        support_labels = torch.arange(w).repeat_interleave(s).repeat(n, 1)
        query_labels = torch.arange(w).repeat_interleave(q).repeat(n, 1)
        return [
            Episode(support[i], support_labels[i], query[i], query_labels[i]) for i in range(n)
        ]
