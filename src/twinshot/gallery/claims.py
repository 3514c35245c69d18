"""Claimed-identity verification: "is this image the identity it claims to be?"

A bank verifying a signature knows whose it should be: the question image is compared
with **all** of that identity's enrolled references and nobody else's, their logits are
combined with the gallery's rule (``max``: the best-matching reference; ``mean``: the
average) and the decision is ``score >= threshold`` at the gallery's calibrated threshold.
This is :meth:`twinshot.gallery.Gallery.verify_claim`, which ``twinshot gallery verify``
and the HTTP service's ``POST /v1/verify`` (with ``identity``) both call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from twinshot.errors import ConfigError, TwinshotError

if TYPE_CHECKING:  # pragma: no cover
    from twinshot.gallery.gallery import Gallery


class UnknownIdentity(TwinshotError):
    """The claimed identity is not enrolled (or has no references)."""


@dataclass(frozen=True)
class ClaimVerification:
    """The answer to one claim.

    Attributes:
        identity: the claimed identity.
        same: ``score >= threshold``: the claim is accepted.
        score: the claimed identity's references' logits combined with ``rule``.
        probability: the calibrated probability that the image is of ``identity``.
        threshold: the logit threshold used (the gallery's unless given).
        rule: ``"max"`` or ``"mean"``.
        references: how many references of ``identity`` were compared.
    """

    identity: str
    same: bool
    score: float
    probability: float
    threshold: float
    rule: str
    references: int

    def to_dict(self) -> dict[str, Any]:
        from twinshot.gallery.results import finite

        return {
            "identity": self.identity, "same": self.same, "score": finite(self.score),
            "probability": self.probability, "threshold": self.threshold, "rule": self.rule,
            "references": self.references,
        }


def claim_scores(gallery: "Gallery", identity: str, embeddings: Any, rule: str) -> tuple[np.ndarray, int]:
    """Logits ``(Q,)`` of query embeddings ``(Q, D)`` against ``identity``'s references
    combined with ``rule``, and the number of references.

    Raises:
        UnknownIdentity: when ``identity`` is not enrolled.
    """
    from twinshot.gallery.gallery import RULES

    if rule not in RULES:
        raise ConfigError(f"unknown rule {rule!r}; valid: {', '.join(RULES)}")
    with gallery._lock:
        gallery._refresh()
        ident_id = gallery._store.identity_id(identity)
        view = gallery._identity_view(ident_id) if ident_id is not None else None  # its rows (or every row in memory)
        g = view.grouping() if view is not None else None
        pos = int(np.searchsorted(g.ident_ids, ident_id)) if g is not None else -1
        if g is None or pos >= g.ident_ids.size or int(g.ident_ids[pos]) != ident_id:
            raise UnknownIdentity(f"identity {identity!r} is not enrolled in {gallery.path}")
        q = gallery._queries(embeddings)
        cand = np.full((len(q), 1), pos, dtype=np.int64)
        scores, _ = view.score_identities(q, cand, 1, rule)
        return scores[:, 0].astype(np.float64), int(g.counts[pos])


def verify_claim_embeddings(
    gallery: "Gallery",
    identity: str,
    embeddings: Any,
    *,
    threshold: float | None = None,
    rule: str | None = None,
) -> list[ClaimVerification]:
    """:meth:`Gallery.verify_claim` for precomputed query embeddings ``(Q, D)`` (or ``(D,)``):
    one :class:`ClaimVerification` per query, all claiming ``identity``."""
    rule = rule or gallery.rule
    scores, n_refs = claim_scores(gallery, identity, embeddings, rule)
    threshold = gallery.threshold if threshold is None else float(threshold)
    probs = gallery.calibration.probability(scores)
    return [
        ClaimVerification(identity, bool(s >= threshold), float(s), float(p), float(threshold), rule, n_refs)
        for s, p in zip(scores.tolist(), np.atleast_1d(probs).tolist())
    ]
