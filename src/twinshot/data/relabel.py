"""Named relabellings of a loaded dataset: turn the folder classes into the classes a task
needs, applied by the trainer after the class-disjoint split (``data.relabel`` in a
training config), so that no original class is in both the training and the validation part.

A relabelling takes a :class:`LabelledImages` and returns a new one that shares its images.

>>> sorted(RELABELS.names())
['signatures_writer_name']
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
    :func:`twinshot.evaluation.signatures.relabel_writer_name`."""
    from twinshot.evaluation.signatures import relabel_writer_name

    return relabel_writer_name(dataset)

