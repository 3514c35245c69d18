"""Claimed-identity verification with a writer-dependent SVM, gallery-independent: the
bank's question "is this signature the claimed client's?" from the client's reference
images, the questioned images and a cohort of other writers' genuine signatures.

This is the rule of ``twinshot evaluate cedar-claims --scoring svm``; the gallery
(``twinshot gallery verify``) still scores claims with its distance rule on embeddings.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from twinshot.data.images import ImageSource
from twinshot.errors import DataError
from twinshot.models.siamese import SiameseNetwork
from twinshot.writer_dependent.classifier import SVMConfig, writer_scores
from twinshot.writer_dependent.features import image_features


def score_claims(
    model: SiameseNetwork,
    references: Sequence[ImageSource],
    questioned: Sequence[ImageSource],
    cohort: Sequence[ImageSource],
    *,
    layer: str = "grid",
    config: SVMConfig | None = None,
    augment: int = 10,
    seed: int = 0,
    batch_size: int = 64,
) -> np.ndarray:
    """SVM scores ``(Q,)`` of ``questioned`` images claiming to be the writer of
    ``references`` (``R >= 1`` images), against ``cohort`` (``C >= 2`` genuine signatures
    of other writers). Higher is more genuine; compare with a threshold calibrated on
    writers that are not enrolled. ``augment`` distorted copies of each reference (seeded
    by ``seed``) are extra positives.

    Raises:
        DataError: on no references, a cohort of fewer than two images, or an unreadable image.
    """
    if not references:
        raise DataError("score_claims needs at least one reference image")
    if len(cohort) < 2:
        raise DataError(f"score_claims needs a cohort of at least two other writers' signatures, got {len(cohort)}")
    feats = image_features(model, [*references, *questioned, *cohort], layer, batch_size=batch_size)
    r, q = len(references), len(questioned)
    if q == 0:
        return np.zeros(0, dtype=np.float64)
    extra = image_features(model, list(references), layer, batch_size=batch_size, copies=augment, seed=seed) if augment else None
    return writer_scores(feats[:r], feats[r : r + q], feats[r + q :], config, extra)
