"""The score stage: the search stage's head logits per candidate identity, then the
gallery's score normalisation (:mod:`twinshot.gallery.scorenorm`, when one is stored) and
its calibration (:mod:`twinshot.gallery.calibration`: logit -> probability)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from twinshot.gallery.index import Queries
from twinshot.gallery.scorenorm import RERANK, normalised_identities, stored_norm


@dataclass(frozen=True)
class Scored:
    """Candidate identities of ``Q`` queries, best first.

    Attributes:
        identity_ids: int64 ``(Q, k)`` the identities' store ids (``-1`` pads).
        scores: float32 ``(Q, k)`` the decision scores (head logits, or normalised scores).
        probabilities: float ``(Q, k)`` the calibrated probability of each raw logit.
    """

    identity_ids: np.ndarray
    scores: np.ndarray
    probabilities: np.ndarray


def score_identities(gallery: Any, q: Queries, k: int, rule: str) -> Scored:
    """Search ``gallery`` (a :class:`twinshot.gallery.Gallery`) for the ``k`` best identities
    of each prepared query under ``rule``, normalise and calibrate their scores."""
    norm = stored_norm(gallery._meta)
    view, ann = gallery._view(q, k if norm is None else max(k, RERANK), rule)  # every row, or the database's candidates
    if norm is None:
        scores, positions = view.identities(q, k, rule, ann)
        raw = scores
    else:
        scores, positions, raw = normalised_identities(view, ann, q, norm, k, rule)
    g = view.grouping()
    ids = np.where(positions >= 0, g.ident_ids[np.maximum(positions, 0)], -1)
    return Scored(ids, scores, gallery.calibration.probability(raw))
