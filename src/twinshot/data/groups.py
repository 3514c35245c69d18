"""Keep or drop whole groups (Omniglot alphabets, signature writers) of a labelled set.

Used to evaluate on a chosen set of alphabets (``twinshot evaluate episodes|open-set
--exclude-groups``), e.g. the background alphabets no minimal model has seen, and to train
on fewer groups than a split leaves (``data.drop_train_groups``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from twinshot.data.dataset import LabelledImages
from twinshot.errors import DataError


def parse_group_list(text: str) -> tuple[str, ...]:
    """``"Latin,Greek"`` -> ``("Latin", "Greek")`` (blanks dropped, order kept, no repeats)."""
    names = [n.strip() for n in text.split(",")]
    return tuple(dict.fromkeys(n for n in names if n))


def select_groups(
    dataset: LabelledImages, *, keep: Iterable[str] = (), drop: Iterable[str] = (), what: str = "data"
) -> LabelledImages:
    """The classes of ``dataset`` whose group is in ``keep`` (all groups when empty) and not
    in ``drop``, relabelled ``0..n-1`` in their old order (see
    :meth:`LabelledImages.subset_classes`).

    Args:
        dataset: images ``(N, C, H, W)`` with their classes' groups.
        keep: group names to keep; empty keeps every group.
        drop: group names to remove.
        what: how to name the set in error messages.

    Raises:
        DataError: a name that is no group of ``dataset`` (a typo would otherwise silently
            keep or drop nothing), or no class left.
    """
    keep, drop = tuple(keep), tuple(drop)
    known = set(dataset.group_names)
    unknown = [g for g in (*keep, *drop) if g not in known]
    if unknown:
        shown = ", ".join(sorted(known)[:8]) + (", ..." if len(known) > 8 else "")
        raise DataError(f"{what}: no group named {unknown[0]!r} (its groups: {shown})")
    if not keep and not drop:
        return dataset
    wanted = {i for i, g in enumerate(dataset.group_names) if (not keep or g in keep) and g not in drop}
    classes = [c for c, g in enumerate(dataset.class_groups.tolist()) if g in wanted]
    if not classes:
        raise DataError(f"{what}: no class left after keeping/dropping groups")
    return dataset.subset_classes(torch.tensor(classes, dtype=torch.long))
