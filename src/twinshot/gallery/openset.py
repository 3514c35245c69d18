"""Open-set identification metrics: some queries show someone who is not enrolled.

Vocabulary (ISO/IEC 19795-1, as NIST's face recognition reports use it). A *mated* search
is a query whose identity is enrolled; a *non-mated* search is one whose identity is not.
With the best candidate's score ``s`` and an acceptance threshold ``t`` (accept when
``s >= t``; scores are higher-is-more-alike logits):

* **DIR(t)**, the detection and identification rate: the share of mated searches whose
  best candidate is the right identity *and* is accepted (``1 - FNIR`` at rank 1);
* **FPIR(t)**, the false positive identification rate: the share of non-mated searches
  whose best candidate is accepted, i.e. **unknowns accepted** as someone;
* **DIR at FPIR f**: DIR at the lowest threshold whose FPIR is at most ``f``;
* the misidentification rate: mated searches accepted as the *wrong* identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from twinshot.errors import DataError

DEFAULT_FPIRS: tuple[float, ...] = (0.01, 0.1)


def _key(rate: float) -> str:
    return f"{rate:g}"


@dataclass(frozen=True)
class OpenSetReport:
    """Open-set identification results.

    Attributes:
        n_mated, n_nonmated: searches whose identity is / is not enrolled.
        rank1: closed-set rank-1 accuracy of the mated searches (no threshold).
        dir_at_fpir: DIR at each target FPIR (keys ``"0.01"``...).
        threshold_at_fpir: the threshold used for each target FPIR.
        fpir_achieved: the FPIR actually reached at that threshold (at most the target).
        threshold: the operating threshold evaluated below (the gallery's), if any.
        dir_at_threshold, fpir_at_threshold, misidentified_at_threshold: at ``threshold``;
            ``fpir_at_threshold`` is the rate of unknowns accepted.
    """

    n_mated: int
    n_nonmated: int
    rank1: float
    dir_at_fpir: dict[str, float] = field(default_factory=dict)
    threshold_at_fpir: dict[str, float] = field(default_factory=dict)
    fpir_achieved: dict[str, float] = field(default_factory=dict)
    threshold: float | None = None
    dir_at_threshold: float | None = None
    fpir_at_threshold: float | None = None
    misidentified_at_threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_mated": self.n_mated,
            "n_nonmated": self.n_nonmated,
            "rank1": self.rank1,
            "dir_at_fpir": dict(self.dir_at_fpir),
            "threshold_at_fpir": dict(self.threshold_at_fpir),
            "fpir_achieved": dict(self.fpir_achieved),
            "threshold": self.threshold,
            "dir_at_threshold": self.dir_at_threshold,
            "unknowns_accepted": self.fpir_at_threshold,
            "misidentified_at_threshold": self.misidentified_at_threshold,
        }


def threshold_at_fpir(nonmated_scores: np.ndarray, fpir: float) -> float:
    """The lowest threshold at which at most ``fpir`` of the non-mated best scores are
    accepted (``score >= threshold``); ``-inf`` when every one may be accepted."""
    s = np.sort(np.asarray(nonmated_scores, dtype=np.float64))[::-1]
    allowed = int(np.floor(fpir * s.size + 1e-9))
    if allowed >= s.size:
        return float("-inf")
    return float(np.nextafter(s[allowed], np.inf))


def open_set_metrics(
    predicted: Sequence[str | None],
    scores: np.ndarray,
    truth: Sequence[str | None],
    *,
    fpirs: Sequence[float] = DEFAULT_FPIRS,
    threshold: float | None = None,
) -> OpenSetReport:
    """Open-set metrics from each query's best candidate.

    Args:
        predicted: ``Q`` best candidate identities, *before* any threshold (``None`` only
            when the gallery had no candidate at all).
        scores: ``(Q,)`` their scores (higher is more alike).
        truth: ``Q`` true identities; ``None`` (or a name not enrolled, decided by the
            caller) marks a non-mated search.
        fpirs: target false positive identification rates for DIR at FPIR.
        threshold: an operating threshold to evaluate as well (e.g. the gallery's).

    Raises:
        DataError: mismatched lengths, or no mated or no non-mated searches.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if not (len(predicted) == len(truth) == scores.size):
        raise DataError(f"predicted, scores and truth differ in length ({len(predicted)}, {scores.size}, {len(truth)})")
    mated = np.array([t is not None for t in truth], dtype=bool)
    correct = np.array([p is not None and p == t for p, t in zip(predicted, truth)], dtype=bool)
    n_mated, n_non = int(mated.sum()), int((~mated).sum())
    if n_mated == 0 or n_non == 0:
        raise DataError(
            f"open-set metrics need both enrolled and unknown queries; got {n_mated} enrolled and {n_non} unknown"
        )
    hit = correct & mated
    non_scores = scores[~mated]
    report: dict[str, Any] = {"dir_at_fpir": {}, "threshold_at_fpir": {}, "fpir_achieved": {}}
    for f in fpirs:
        t = threshold_at_fpir(non_scores, f)
        report["threshold_at_fpir"][_key(f)] = t
        report["dir_at_fpir"][_key(f)] = float((hit & (scores >= t)).sum() / n_mated)
        report["fpir_achieved"][_key(f)] = float((non_scores >= t).mean())
    at: dict[str, Any] = {}
    if threshold is not None:
        accepted = scores >= threshold
        at = {
            "threshold": float(threshold),
            "dir_at_threshold": float((hit & accepted).sum() / n_mated),
            "fpir_at_threshold": float(accepted[~mated].mean()),
            "misidentified_at_threshold": float((mated & ~correct & accepted).sum() / n_mated),
        }
    return OpenSetReport(n_mated=n_mated, n_nonmated=n_non, rank1=float(hit.sum() / n_mated), **report, **at)


def evaluate_open_set(
    gallery: Any,
    images: Sequence[Any],
    truth: Sequence[str | None],
    *,
    fpirs: Sequence[float] = DEFAULT_FPIRS,
    threshold: float | None = None,
) -> OpenSetReport:
    """Identify ``images`` against ``gallery`` and compute :func:`open_set_metrics`.

    ``truth[i]`` is the identity of query ``i``; a name that is not enrolled in the gallery
    counts as ``None`` (a non-mated search). ``threshold`` defaults to the gallery's.
    """
    enrolled = set(gallery.identity_names())
    results = gallery.identify(images, k=1, threshold=float("-inf"))
    predicted = [r.candidates[0].identity if r.candidates else None for r in results]
    scores = np.array([r.score for r in results], dtype=np.float64)
    mapped = [t if t in enrolled else None for t in truth]
    return open_set_metrics(
        predicted, scores, mapped, fpirs=fpirs, threshold=gallery.threshold if threshold is None else threshold
    )
