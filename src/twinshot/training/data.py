"""The data of a training run: load the sources named in the config (merging several),
split off the validation classes, and add rotated copies as new training classes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from twinshot.data.dataset import LabelledImages
from twinshot.data.images import Preprocessing
from twinshot.errors import DataError
from twinshot.training.config import DataConfig

#: The repository root when twinshot runs from a source checkout (``src/twinshot/..``).
REPO_ROOT = Path(__file__).resolve().parents[3]


def resolve_source(source: str | Path, *, base: Path | None = None) -> Path:
    """An existing path for ``source``: as given (relative to the working directory),
    else relative to ``base`` (the repository root by default, so the default
    ``../shared/datasets/...`` works from anywhere inside a checkout)."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    tried = [str(path)]
    if not path.is_absolute():
        alt = (base or REPO_ROOT) / path
        if alt.exists():
            return alt.resolve()
        tried.append(str(alt.resolve()))
    raise DataError(f"dataset not found: {source} (looked at {' and '.join(dict.fromkeys(tried))}); "
                    "set data.sources to the folder or zip of the dataset")


def merge_datasets(datasets: list[LabelledImages]) -> LabelledImages:
    """One dataset from several with the same preprocessing.

    Classes are identified by name and groups by name: a class present in two sources is
    one class, and an image whose file name already appears in that class (the same
    drawing shipped in two zips, like Omniglot's small background sets) is kept once.
    """
    if len(datasets) == 1:
        return datasets[0]
    pre = datasets[0].preprocessing
    class_ids: dict[str, int] = {}
    group_ids: dict[str, int] = {}
    class_group: list[int] = []
    seen: set[tuple[int, str]] = set()
    keep_images, labels, paths = [], [], []
    for ds in datasets:
        if ds.images.shape[1:] != datasets[0].images.shape[1:]:
            raise DataError("cannot merge datasets decoded at different sizes")
        remap = []
        for c, name in enumerate(ds.class_names):
            if name not in class_ids:
                g = ds.group_names[int(ds.class_groups[c])]
                group_ids.setdefault(g, len(group_ids))
                class_ids[name] = len(class_ids)
                class_group.append(group_ids[g])
            remap.append(class_ids[name])
        take = []
        for i, (label, path) in enumerate(zip(ds.labels.tolist(), ds.paths)):
            c = remap[label]
            key = (c, path.replace("\\", "/").rsplit("/", 1)[-1])
            if key in seen:
                continue
            seen.add(key)
            take.append(i)
            labels.append(c)
            paths.append(path)
        keep_images.append(ds.images[torch.tensor(take, dtype=torch.long)])
    return LabelledImages(
        images=torch.cat(keep_images, 0),
        labels=torch.tensor(labels, dtype=torch.long),
        class_names=list(class_ids),
        class_groups=torch.tensor(class_group, dtype=torch.long),
        group_names=list(group_ids),
        paths=paths,
        preprocessing=pre,
    )


def load_sources(
    sources: tuple[str, ...] | list[str],
    preprocessing: Preprocessing,
    *,
    progress: bool = False,
    cache_dir: str | None = None,
) -> LabelledImages:
    """Load and merge every source (folders or zips of class folders)."""
    from twinshot.data import load_dataset

    if not sources:
        raise DataError("data.sources is empty: name at least one folder or zip")
    paths = [resolve_source(s) for s in sources]
    datasets = [load_dataset(p, preprocessing, progress=progress, cache_dir=cache_dir or None) for p in paths]
    return merge_datasets(datasets)


@dataclass(frozen=True)
class RunData:
    """The two class-disjoint parts a run uses.

    Attributes:
        train: training classes (with rotated copies added when configured).
        val: held-out classes for validation and calibration, or None.
        full: everything that was loaded.
        extra_classes: names of the training classes that came from
            ``data.extra_train_sources`` (for ``sampler.extra_share``).
    """

    train: LabelledImages
    val: LabelledImages | None
    full: LabelledImages
    extra_classes: frozenset[str] = frozenset()


def prepare_data(config: DataConfig, preprocessing: Preprocessing, *, progress: bool = False) -> RunData:
    """Load, split by class or group (seeded), relabel both parts if configured, and add
    rotations to the training part. With ``config.aligned`` the sources are face chips
    already: they are loaded without the preprocessing's aligner."""
    from twinshot.data import class_split

    if config.aligned and preprocessing.align:
        preprocessing = replace(preprocessing, align="")
    from twinshot.data.relabel import RELABELS

    relabel = RELABELS.get(config.relabel) if config.relabel else None  # fails before loading
    full = load_sources(config.sources, preprocessing, progress=progress, cache_dir=config.cache_dir)
    if relabel is not None and getattr(relabel, "before_split", False):
        if config.split_by != "group":
            raise DataError(f"data.relabel={config.relabel!r} needs data.split_by=\"group\" (it relabels before the split)")
        full, relabel = relabel(full), None
    if config.val > 0:
        val_amount: float | int = int(config.val) if config.val >= 1 else config.val
        try:
            split = class_split(full, val=val_amount, test=0, seed=config.split_seed, by=config.split_by)
        except DataError as e:
            raise DataError(f"data.val / data.split_by = {config.split_by!r}: {e}{_split_hint(full, config)}") from e
        train, val = split.train, split.val
    else:
        train, val = full, None
    train = _thin_training_part(train, config)
    if relabel is not None:
        train = relabel(train)
        val = None if val is None else relabel(val)
    extra_classes: frozenset[str] = frozenset()
    if config.extra_train_sources:
        extra = load_sources(config.extra_train_sources, preprocessing, progress=progress, cache_dir=config.cache_dir)
        if config.extra_train_relabel:
            extra = RELABELS.get(config.extra_train_relabel)(extra)
        clash = set(extra.class_names) & set(train.class_names)
        if clash:
            raise DataError(f"data.extra_train_sources share class names with the training part: {', '.join(sorted(clash)[:3])}")
        if val is not None and set(extra.class_names) & set(val.class_names):
            raise DataError("data.extra_train_sources share class names with the validation part")
        train = merge_datasets([train, extra])
        extra_classes = frozenset(extra.class_names)
    if config.rotations:
        from twinshot.data import add_rotated_classes

        bad = [r for r in config.rotations if r % 90 or r % 360 == 0]
        if bad:
            raise DataError(f"data.rotations must be multiples of 90 other than 0, got {bad}")
        train = add_rotated_classes(train, rotations=tuple(config.rotations))
    return RunData(train=train, val=val, full=full, extra_classes=extra_classes)


def _split_hint(full: LabelledImages, config: DataConfig) -> str:
    """What to change when the held-out part leaves nothing to train on (a newcomer's flat
    folder under a preset that holds out whole alphabets, or a folder of one class)."""
    present = torch.unique(full.labels)
    n_classes = len(present)
    if n_classes < 2:
        return f"; the sources hold {n_classes} class: training needs at least 2 class folders"
    n_groups = len(torch.unique(full.class_groups[present]))
    if config.split_by == "group" and n_groups < n_classes:
        return (
            f"; the sources hold {n_groups} group(s) of {n_classes} classes (a folder of class folders is one group): "
            f"hold out classes instead with --set data.split_by=class"
            + (f", or fewer groups with --set data.val=N (N < {n_groups})" if n_groups >= 2 else "")
        )
    return f"; the sources hold {n_classes} classes: hold out fewer with --set data.val=N (N < {n_classes})"


def _thin_training_part(train: LabelledImages, config: DataConfig) -> LabelledImages:
    """The training part without ``data.drop_train_groups`` (named groups), then limited to
    ``data.train_limit`` groups or classes (seeded, nested); the held-out part is never touched.
    Both measure how accuracy grows with the amount of training data."""
    if config.drop_train_groups:
        from twinshot.data.groups import select_groups

        train = select_groups(train, drop=config.drop_train_groups, what="data.drop_train_groups (training part)")
    if config.train_limit:
        from twinshot.data.splits import limit_units

        train = limit_units(train, config.train_limit, seed=config.split_seed, by=config.split_by)
    return train
