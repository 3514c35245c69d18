"""The in-memory labelled image set that training, evaluation and the gallery share."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from twinshot.data.images import Preprocessing
from twinshot.errors import DataError


@dataclass
class LabelledImages:
    """A labelled image set held in memory as one uint8 tensor.

    Attributes:
        images: uint8 ``(N, C, H, W)``, already resized and inverted per ``preprocessing``.
        labels: int64 ``(N,)``, class index in ``[0, n_classes)``.
        class_names: ``n_classes`` names, e.g. ``"Latin/character01"``.
        class_groups: int64 ``(n_classes,)``, the group (Omniglot alphabet) of each class.
        group_names: names of the groups; a set without groups has one group ``""``.
        paths: ``N`` strings naming each image's source (for messages and reports).
        preprocessing: how the images were decoded.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    class_groups: torch.Tensor
    group_names: list[str]
    paths: list[str]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (n,) or len(self.paths) != n:
            raise DataError("images, labels and paths must have the same length")
        if len(self.class_groups) != len(self.class_names):
            raise DataError("class_groups must have one entry per class")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def groups(self) -> torch.Tensor:
        """int64 ``(N,)``: the group of each image."""
        return self.class_groups[self.labels]

    def class_indices(self) -> list[torch.Tensor]:
        """For each class, the indices of its images (int64 tensors)."""
        order = torch.argsort(self.labels, stable=True)
        counts = torch.bincount(self.labels, minlength=self.n_classes).tolist()
        return list(torch.split(order, counts))

    def subset_classes(self, classes: torch.Tensor | list[int]) -> LabelledImages:
        """The images of ``classes`` only, relabelled ``0..len(classes)-1`` in the given order."""
        classes = torch.as_tensor(classes, dtype=torch.long)
        remap = torch.full((self.n_classes,), -1, dtype=torch.long)
        remap[classes] = torch.arange(len(classes))
        new_labels = remap[self.labels]
        keep = torch.nonzero(new_labels >= 0).flatten()
        used_groups = torch.unique(self.class_groups[classes])
        gremap = torch.full((len(self.group_names),), -1, dtype=torch.long)
        gremap[used_groups] = torch.arange(len(used_groups))
        return LabelledImages(
            images=self.images[keep],
            labels=new_labels[keep],
            class_names=[self.class_names[c] for c in classes.tolist()],
            class_groups=gremap[self.class_groups[classes]],
            group_names=[self.group_names[g] for g in used_groups.tolist()],
            paths=[self.paths[i] for i in keep.tolist()],
            preprocessing=self.preprocessing,
        )
