"""Named relabellings of a loaded dataset: turn the folder classes into the classes a task
needs, applied by the trainer after the class-disjoint split (``data.relabel`` in a
training config), so that no original class is in both the training and the validation part.

A relabelling takes a :class:`LabelledImages` and returns a new one that shares its images.
One marked ``before_split = True`` runs on the whole dataset before the split instead (its
classes must then be split by group, so that no original class is in both parts).

>>> sorted(RELABELS.names())
['cedar_writers', 'signatures_writer_name']
"""

from __future__ import annotations

from twinshot.data.dataset import LabelledImages
from twinshot.registry import Registry

#: Relabellings by name (``data.relabel`` in a training config).
RELABELS: Registry[LabelledImages] = Registry("relabel")


@RELABELS.register("signatures_writer_name")
def signatures_writer_name(dataset: LabelledImages) -> LabelledImages:
    """Writer folders of the cross-media signatures -> ``writer/name`` classes grouped by
    name, so that a within-group episode holds one name written by several writers (the
    impostor case of writer verification). See
    :func:`twinshot.data.datasets.crossmedia.relabel_writer_name`."""
    from twinshot.data.datasets.crossmedia import relabel_writer_name

    return relabel_writer_name(dataset)


@RELABELS.register("cedar_writers")
def cedar_writers(dataset: LabelledImages) -> LabelledImages:
    """CEDAR's ``full_org``/``full_forg`` folders -> a genuine class ``"<writer>"`` and a
    forgery class ``"<writer>/forged"`` per writer, grouped by writer; runs before the split
    (use ``data.split_by = "group"``). See
    :func:`twinshot.data.datasets.cedar.relabel_cedar_writers`."""
    from twinshot.data.datasets.cedar import relabel_cedar_writers

    return relabel_cedar_writers(dataset)


cedar_writers.before_split = True  # type: ignore[attr-defined]

