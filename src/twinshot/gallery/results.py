"""What the gallery returns: candidates, identifications, search results, verifications,
enrollments. Every ``to_dict`` gives plain JSON-ready values (``-inf`` scores become None)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Candidate:
    """One candidate identity of a query: its combined score and calibrated probability."""

    identity: str
    score: float
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return {"identity": self.identity, "score": self.score, "probability": self.probability}


@dataclass(frozen=True)
class Identification:
    """The answer for one query.

    Attributes:
        identity: the best candidate if its score is at least the threshold, else ``None``.
        score: the best candidate's score (``-inf`` if there is none).
        probability: its calibrated probability.
        candidates: up to ``k`` candidates, best first.
        threshold: the threshold the decision used.
    """

    identity: str | None
    score: float
    probability: float
    candidates: list[Candidate]
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "score": finite(self.score),
            "probability": self.probability,
            "threshold": self.threshold,
            "candidates": [c.to_dict() for c in self.candidates],
        }


@dataclass(frozen=True)
class Neighbour:
    """One enrolled image found by search."""

    identity: str
    image_id: int
    score: float
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return {"identity": self.identity, "image_id": self.image_id, "score": self.score, "probability": self.probability}


@dataclass(frozen=True)
class SearchResult:
    """The ``k`` nearest enrolled images of ``Q`` queries (see the module's search contract).

    Attributes:
        scores: float32 ``(Q, k)`` logits, best first; ``-inf`` where fewer than ``k`` exist.
        image_ids: int64 ``(Q, k)``; ``-1`` where fewer than ``k`` exist.
        identities: ``Q`` lists of ``k`` identity names (``None`` for padding).
        probabilities: float64 ``(Q, k)`` calibrated probabilities (0 for padding).
    """

    scores: np.ndarray
    image_ids: np.ndarray
    identities: list[list[str | None]]
    probabilities: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def neighbours(self, i: int) -> list[Neighbour]:
        """The real (non-padding) neighbours of query ``i``, best first."""
        return [
            Neighbour(name, int(iid), float(s), float(p))
            for name, iid, s, p in zip(self.identities[i], self.image_ids[i], self.scores[i], self.probabilities[i])
            if iid >= 0 and name is not None
        ]


@dataclass(frozen=True)
class Verification:
    """Do two images show the same identity?

    Attributes:
        probability: calibrated probability that they do.
        score: the head's logit (higher is more alike).
        same: ``score >= threshold``.
        threshold: the threshold used.
    """

    probability: float
    score: float
    same: bool
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {"probability": self.probability, "score": self.score, "same": self.same, "threshold": self.threshold}


@dataclass(frozen=True)
class EnrollResult:
    """What an enrollment did for one identity.

    Attributes:
        identity: its name.
        image_ids: ids of the references added.
        replaced: references removed first (``replace=True``).
        created: whether the identity is new.
    """

    identity: str
    image_ids: list[int]
    replaced: int = 0
    created: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"identity": self.identity, "image_ids": self.image_ids, "references": len(self.image_ids), "replaced": self.replaced, "created": self.created}


def finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
