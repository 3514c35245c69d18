"""The decide stage: from scored candidates to the answers a caller sees: an
:class:`~twinshot.gallery.results.Identification` per query (the best candidate is the
identity when its score reaches the threshold, else ``None``) and the
:class:`~twinshot.gallery.results.SearchResult` of an image search."""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from twinshot.gallery.results import Candidate, Identification, SearchResult
from twinshot.gallery.scoring import Scored


def decide(scored: Scored, names: dict[int, str], threshold: float) -> list[Identification]:
    """One :class:`Identification` per query: candidates best first (``-1`` pads dropped),
    ``identity`` the best one when ``score >= threshold``."""
    out = []
    for ids, scores, probs in zip(scored.identity_ids, scored.scores, scored.probabilities):
        cands = [Candidate(names[int(d)], float(s), float(p)) for d, s, p in zip(ids, scores, probs) if d >= 0]
        best = cands[0] if cands else None
        out.append(
            Identification(
                identity=best.identity if best and best.score >= threshold else None,
                score=best.score if best else float("-inf"),
                probability=best.probability if best else 0.0,
                candidates=cands,
                threshold=threshold,
            )
        )
    return out


def search_result(
    logits: np.ndarray,
    rows: np.ndarray,
    image_ids: np.ndarray,
    identity_ids: np.ndarray,
    names_of: Callable[[Iterable[int]], dict[int, str]],
    probability: Callable[[np.ndarray], np.ndarray],
) -> SearchResult:
    """The :class:`SearchResult` of rows ``(Q, k)`` (``-1``: not found) with their logits,
    given every row's image id and identity id."""
    valid = rows >= 0
    ids = np.where(valid, image_ids[np.maximum(rows, 0)], -1)
    ident = np.where(valid, identity_ids[np.maximum(rows, 0)], -1)
    names = names_of(ident.ravel().tolist())
    identities = [[names.get(int(i)) if i >= 0 else None for i in row] for row in ident]
    probs = np.where(valid, probability(logits), 0.0)
    return SearchResult(scores=logits.astype(np.float32), image_ids=ids, identities=identities, probabilities=probs)
