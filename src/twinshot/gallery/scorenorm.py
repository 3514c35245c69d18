"""Cohort score normalisation inside a gallery (``twinshot gallery normalise``).

The gallery stores the method (:data:`twinshot.gallery.cohort.NORMS`) and a cohort of
impostor embeddings (images of people or classes that are not enrolled, typically the
calibration data) in its metadata. When a method other than ``"none"`` is stored:

* ``identify`` re-scores the best :data:`RERANK` raw candidates of each query with
  normalised scores (each reference's score normalised, then the gallery's rule per
  identity) and ranks them by it; ``score`` and the threshold are then in normalised units
  (standard deviations), while ``probability`` stays the calibrated probability of the raw
  score (a pair calibration says nothing about normalised scores);
* ``verify`` normalises the pair's score the same way (image 1 as query, image 2 as reference);
* ``search`` (image retrieval) keeps raw scores.

Normalised scores need their own threshold: after ``gallery normalise``, run
``gallery calibrate --fpir`` (which simulates galleries with the stored normalisation).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from twinshot.errors import ConfigError, DataError
from twinshot.gallery.cohort import DEFAULT_TOP_K, NORMS, CohortNorm, cohort_stats, sample_cohort

META_NORM = "score_norm"
META_COHORT = "score_norm_cohort"
#: Raw candidates per query that identification re-scores with normalised scores.
RERANK = 50


def stored_norm(meta: dict[str, str]) -> CohortNorm | None:
    """The gallery's normalisation from its metadata, or ``None`` for raw scores."""
    text = meta.get(META_NORM, "")
    if not text:
        return None
    info = json.loads(text)
    if info.get("method", "none") == "none":
        return None
    raw = base64.b64decode(meta.get(META_COHORT, ""))
    cohort = np.frombuffer(raw, dtype="<f4").reshape(int(info["cohort_size"]), int(info["dim"])).astype(np.float32)
    return CohortNorm(info["method"], cohort, top_k=int(info.get("top_k", DEFAULT_TOP_K)))


def set_score_norm(
    gallery: Any,
    method: str,
    *,
    cohort: str | os.PathLike | None = None,
    cohort_size: int = 1000,
    top_k: int = DEFAULT_TOP_K,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Store ``method`` and a cohort of at most ``cohort_size`` images of the labelled folder
    (or zip, or a folder of images) ``cohort``, embedded with the gallery's model; ``"none"``
    removes the normalisation. Returns a summary."""
    if method not in NORMS:
        raise ConfigError(f"unknown score normalisation {method!r}; valid: {', '.join(NORMS)}")
    if method == "none":
        updates = {META_NORM: "", META_COHORT: ""}
        info: dict[str, Any] = {"method": "none"}
    else:
        if cohort is None:
            raise ConfigError(f"score normalisation {method!r} needs --cohort DIR (images of people who are not enrolled)")
        from twinshot.data import load_dataset
        from twinshot.gallery.embedding import embed_uint8

        data = load_dataset(Path(cohort), gallery.embedder.preprocessing, progress=progress)
        if len(data) < 2:
            raise DataError(f"{cohort}: a cohort needs at least 2 images, found {len(data)}")
        e = sample_cohort(embed_uint8(gallery.embedder, data.images.numpy()), cohort_size, seed)
        CohortNorm(method, e, top_k=top_k)  # checks
        info = {"method": method, "top_k": int(top_k), "cohort_size": int(e.shape[0]), "dim": int(e.shape[1]), "source": str(cohort)}
        updates = {META_NORM: json.dumps(info), META_COHORT: base64.b64encode(e.astype("<f4").tobytes()).decode("ascii")}
    with gallery._lock:
        gallery._write_meta(updates, gallery._audit("set", details={"score_norm": method}))
    return info


def _stats(norm: CohortNorm, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return cohort_stats(scores, norm.top_k if norm.method == "asnorm" else None)


def normalised_identities(view: Any, ann: Any, q: Any, norm: CohortNorm, k: int, rule: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(normalised scores, identity positions, raw scores)``, each ``(Q, min(k, M))``, best
    first by normalised score: the best :data:`RERANK` raw candidates re-scored. ``view`` is
    the :class:`~twinshot.gallery.search.RowSearch` to search (a gallery's rows, or the
    database's candidates), ``ann`` its approximate index or None; the caller holds the
    gallery's lock; ``q`` are its prepared queries; positions index ``view.grouping()``."""
    scorer, stored = view.scorer, view.matrix.data
    g = view.grouping()
    raw_s, cand = view.identities(q, max(k, RERANK), rule, ann)
    k = min(k, g.ident_ids.size)
    cohort_as_queries = scorer.prepare_queries(norm.cohort)
    q_mu, q_sd = _stats(norm, scorer.logits(q, scorer.prepare(norm.cohort)))  # (Q,)
    out_n = np.full((len(q), k), -np.inf, np.float32)
    out_r = np.full((len(q), k), -np.inf, np.float32)
    out_i = np.full((len(q), k), -1, np.int64)
    for i in range(len(q)):
        idents = cand[i][cand[i] >= 0]
        if idents.size == 0:
            continue
        starts, stops = g.offsets[idents], g.offsets[idents + 1]
        rows = np.concatenate([g.order[a:b] for a, b in zip(starts, stops)])
        raw = scorer.logits_at(q.subset(slice(i, i + 1)), stored, rows[None])[0].astype(np.float64)
        s = np.zeros_like(raw)
        parts = 0
        if norm.method in ("znorm", "snorm", "asnorm"):
            r_mu, r_sd = _stats(norm, scorer.logits(cohort_as_queries, stored[rows]).T)  # (rows,)
            s += (raw - r_mu) / r_sd
            parts += 1
        if norm.method in ("tnorm", "snorm", "asnorm"):
            s += (raw - q_mu[i]) / q_sd[i]
            parts += 1
        s /= parts
        bounds = np.concatenate([[0], np.cumsum(stops - starts)[:-1]])
        if rule == "max":
            per, per_raw = np.maximum.reduceat(s, bounds), np.maximum.reduceat(raw, bounds)
        else:
            per, per_raw = np.add.reduceat(s, bounds) / (stops - starts), np.add.reduceat(raw, bounds) / (stops - starts)
        order = np.argsort(-per, kind="stable")[:k]
        out_n[i, : order.size] = per[order]
        out_r[i, : order.size] = per_raw[order]
        out_i[i, : order.size] = idents[order]
    return out_n, out_i, out_r


def normalised_pair_score(embedder: Any, norm: CohortNorm, e1: np.ndarray, e2: np.ndarray) -> float:
    """The normalised score of embedding ``e1 (1, D)`` (query) against ``e2 (1, D)`` (reference)."""
    raw = np.asarray(embedder.pairwise_logits(e1, e2), dtype=np.float64)
    return float(norm.apply(raw, e1, e2, embedder.pairwise_logits)[0, 0])
