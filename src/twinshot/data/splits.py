"""Class-disjoint train / validation / test splits (never by image).

One-shot learning is judged on classes the model has never seen, so a split always puts
all images of a class in one part. ``by="group"`` goes further and holds out whole groups
(Omniglot alphabets), so validation characters come from alphabets unseen in training.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

from twinshot.data.dataset import LabelledImages
from twinshot.errors import DataError

SPLIT_UNITS = ("class", "group")
_PLURAL = {"class": "classes", "group": "groups"}


@dataclass(frozen=True)
class Split:
    """Three class-disjoint parts of one dataset.

    Attributes:
        train: the training classes.
        val: the validation classes, or None when ``val=0`` was asked for.
        test: the test classes, or None when ``test=0`` (the default).
    """

    train: LabelledImages
    val: LabelledImages | None
    test: LabelledImages | None


def _count(name: str, amount: float | int, total: int, unit: str) -> int:
    """Turn a fraction in ``[0, 1)`` or a count into a number of units."""
    units = _PLURAL[unit]
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
        raise DataError(f"{name} must be a fraction in [0, 1) or a count of {units}, got {amount!r}")
    if not isinstance(amount, numbers.Integral):
        amount = float(amount)
        if not 0.0 <= amount < 1.0:
            raise DataError(
                f"{name}={amount} must be a fraction in [0, 1) or a whole count of {units}"
            )
        n = round(amount * total)
        if amount > 0 and n == 0:
            raise DataError(
                f"{name}={amount} of {total} {units} is 0 {units}; ask for a larger fraction "
                f"or a count"
            )
        return n
    if amount < 0:
        raise DataError(f"{name}={amount} must not be negative")
    return int(amount)


def class_split(
    dataset: LabelledImages,
    *,
    val: float | int = 0.2,
    test: float | int = 0.0,
    seed: int = 0,
    by: str = "class",
) -> Split:
    """Split ``dataset`` into class-disjoint train / val / test parts at random.

    Args:
        dataset: the images to split.
        val, test: each a fraction in ``[0, 1)`` of the classes (or groups), rounded to the
            nearest whole number, or an ``int`` count. 0 leaves that part out (None).
        seed: the same seed and dataset give the same split. The test part is drawn first,
            so changing ``val`` does not change which classes are held out for test.
        by: ``"class"`` draws classes; ``"group"`` draws whole groups (all their classes).

    Returns:
        A :class:`Split`; each part keeps the dataset's class order and is relabelled
        ``0..n_classes-1`` (see :meth:`LabelledImages.subset_classes`).

    Raises:
        DataError: when a requested part would be empty, or nothing would be left to train.
    """
    if by not in SPLIT_UNITS:
        raise DataError(f"split by {by!r} is not valid; valid: {', '.join(SPLIT_UNITS)}")
    present = torch.unique(dataset.labels)  # classes that have images
    if by == "class":
        units = present
        unit_of_class = torch.arange(dataset.n_classes)
    else:
        unit_of_class = dataset.class_groups
        units = torch.unique(unit_of_class[present])
    n_units = len(units)
    if n_units == 0:
        raise DataError("the dataset has no images to split")
    n_test = _count("test", test, n_units, by)
    n_val = _count("val", val, n_units, by)
    if n_test + n_val >= n_units:
        raise DataError(
            f"val={val} and test={test} take {n_val} + {n_test} of the {n_units} {_PLURAL[by]}, "
            f"leaving none to train on"
        )
    g = torch.Generator().manual_seed(int(seed))
    order = units[torch.randperm(n_units, generator=g)]
    part_of_unit = torch.zeros(int(unit_of_class.max()) + 1, dtype=torch.long)  # 0 = train
    part_of_unit[order[:n_test]] = 2
    part_of_unit[order[n_test : n_test + n_val]] = 1
    part_of_class = part_of_unit[unit_of_class]

    def part(code: int) -> LabelledImages | None:
        classes = present[part_of_class[present] == code]
        return dataset.subset_classes(classes) if len(classes) else None

    train = part(0)
    assert train is not None  # guaranteed by the count check above
    return Split(train=train, val=part(1), test=part(2))


def limit_units(dataset: LabelledImages, n: int, *, seed: int = 0, by: str = "class") -> LabelledImages:
    """Keep only ``n`` of the dataset's classes (``by="class"``) or groups (``by="group"``,
    all their classes): the first ``n`` of a permutation of them seeded by ``seed`` (so a
    smaller ``n`` keeps a subset of what a larger one keeps, with the same seed).

    Used on a training part to measure how a model scales with the number of training
    classes or groups (``data.train_limit``). ``n`` at least the number present keeps
    everything; the kept classes keep the dataset's order.

    Raises:
        DataError: when ``n`` is not a positive whole number or ``by`` is not valid.
    """
    if by not in SPLIT_UNITS:
        raise DataError(f"split by {by!r} is not valid; valid: {', '.join(SPLIT_UNITS)}")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise DataError(f"train_limit must be a positive whole number of {_PLURAL[by]}, got {n!r}")
    present = torch.unique(dataset.labels)
    unit_of_class = torch.arange(dataset.n_classes) if by == "class" else dataset.class_groups
    units = torch.unique(unit_of_class[present])
    if n >= len(units):
        return dataset
    g = torch.Generator().manual_seed(int(seed))
    kept = units[torch.randperm(len(units), generator=g)[: int(n)]]
    keep = torch.zeros(int(unit_of_class.max()) + 1, dtype=torch.bool)
    keep[kept] = True
    return dataset.subset_classes(present[keep[unit_of_class[present]]])
