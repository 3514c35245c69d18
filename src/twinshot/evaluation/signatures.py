"""Writer verification on the cross-media signatures dataset.

The dataset-specific code (file layout, pairs, the ``writer/name`` relabelling) lives in
:mod:`twinshot.data.datasets.crossmedia` and is re-exported here; this module adds the two
helpers that need the trainer. Nothing in :mod:`twinshot.data` imports this module.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from twinshot.data.datasets.crossmedia import (
    IMAGES_PER_WRITER,
    MEDIA,
    NAMES_PER_WRITER,
    SignatureImage,
    relabel_writer_name,
    signature_images,
    signature_medium,
    signature_name,
    writer_verification_pairs,
)
from twinshot.data.pairs import write_pairs_csv

__all__ = [
    "IMAGES_PER_WRITER", "MEDIA", "NAMES_PER_WRITER", "SignatureImage", "relabel_writer_name",
    "signature_images", "signature_medium", "signature_name", "train_writer_name",
    "write_pairs_csv", "writer_name_run_data", "writer_verification_pairs",
]


def writer_name_run_data(config: Any, *, progress: bool = False) -> Any:
    """The :class:`twinshot.training.data.RunData` of a signatures training config with
    ``writer/name`` classes: the sources are loaded and split **by writer** as configured
    (``data.split_by = "class"`` on writer folders), then each part is relabelled with
    :func:`relabel_writer_name` (``data.relabel = "signatures_writer_name"``, which the
    ``signatures`` preset sets), so no writer is in both parts."""
    from twinshot.training.data import prepare_data
    from twinshot.training.run import model_spec

    data_config = dataclasses.replace(config.data, relabel="signatures_writer_name")
    return prepare_data(data_config, model_spec(config).preprocessing, progress=progress)


def train_writer_name(run_dir: str | os.PathLike, *, preset: str = "signatures", overrides: dict | None = None, progress: bool = True) -> Any:
    """Train the ``signatures`` preset (``writer/name`` classes grouped by name); returns the
    ``TrainResult``. The same as ``twinshot train --preset signatures --out RUN_DIR``."""
    from twinshot.training import load_config, train

    config = load_config(preset=preset, overrides={"data.relabel": "signatures_writer_name", **(overrides or {})})
    return train(config, run_dir, progress=progress)
