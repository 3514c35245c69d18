"""The search stage: a gallery's rows in memory (loaded from its store) and the exact or
approximate search over them, by image (:meth:`RowSearch.rows`) or by identity under a
combination rule (:meth:`RowSearch.identities`).

Every score is the model head's **logit** (higher is more alike). The exact kernels are
those of :mod:`twinshot.gallery.index`; an approximate index (faiss HNSW, or a database's
own index) only proposes candidate rows, which are then scored exactly here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from twinshot.gallery.index import ExactIndex, Queries, Scorer, StoredMatrix, topk
from twinshot.gallery.store import StoredRows

#: Candidate rows fetched from an approximate index per query (at least; more for large k).
HNSW_MIN_CANDIDATES = 64
#: Exact "max" identification fetches ``(k - 1) * r + 1`` rows (``r``: most references of
#: one identity); above this many it aggregates every row instead.
MAX_ROW_CANDIDATES = 4096


class Candidates(Protocol):
    """An approximate index: proposes up to ``n`` rows per query (positions into the sorted
    image ids ``ids``; ``-1`` pads), int64 ``(Q, n)``."""

    def candidates(self, q: Queries, n: int, ids: np.ndarray) -> np.ndarray: ...


@dataclass
class Grouping:
    """Rows grouped by identity: ``ident_ids (M,)`` database ids, ``row_ident (N,)`` the
    position of each row's identity in it, ``order``/``offsets`` the rows of each identity
    (CSR), ``counts (M,)``."""

    ident_ids: np.ndarray
    row_ident: np.ndarray
    order: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray

    @property
    def r_max(self) -> int:
        return int(self.counts.max()) if self.counts.size else 0


def group(identity_ids: np.ndarray) -> Grouping:
    ident_ids, row_ident, counts = np.unique(identity_ids, return_inverse=True, return_counts=True)
    order = np.argsort(row_ident, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return Grouping(ident_ids, row_ident.astype(np.int64), order, offsets, counts)


class RowSearch:
    """The rows of one gallery in their stored form, searchable.

    Args:
        scorer: the model head's scorer.
        rows: the store's rows (image ids sorted); their vectors are prepared (a cosine
            head normalises them in place).
    """

    def __init__(self, scorer: Scorer, rows: StoredRows, dim: int) -> None:
        self.scorer = scorer
        self.ids = rows.ids
        self.identity_ids = rows.identity_ids
        self.matrix = StoredMatrix(scorer.width(dim), scorer.prepare(rows.vectors, copy=False))
        self.exact = ExactIndex(scorer, self.matrix)
        self._groups: Grouping | None = None

    def __len__(self) -> int:
        return int(self.ids.size)

    # -- keeping up with writes ------------------------------------------------------

    def remove(self, image_ids: np.ndarray) -> None:
        keep = ~np.isin(self.ids, image_ids)
        self.ids, self.identity_ids = self.ids[keep], self.identity_ids[keep]
        self.matrix.keep(keep)
        self._groups = None

    def append(self, added: StoredRows) -> None:
        self.ids = np.concatenate([self.ids, added.ids])
        self.identity_ids = np.concatenate([self.identity_ids, added.identity_ids])
        self.matrix.append(self.scorer.prepare(added.vectors))
        self._groups = None

    def grouping(self) -> Grouping:
        if self._groups is None:
            self._groups = group(self.identity_ids)
        return self._groups

    # -- by image ---------------------------------------------------------------------

    def rows(self, q: Queries, k: int, ann: Candidates | None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best rows per query: ``(logits float32 (Q, k), rows int64 (Q, k))``,
        best first; ``-inf`` / ``-1`` where an approximate index found fewer."""
        if ann is not None:
            rows = ann.candidates(q, max(k, HNSW_MIN_CANDIDATES), self.ids)
            logits = self.scorer.logits_at(q, self.matrix.data, rows)
            order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
            logits = np.take_along_axis(logits, order, 1)
            rows = np.take_along_axis(rows, order, 1)
            rows = np.where(np.isneginf(logits), -1, rows)
        else:
            logits, rows = self.exact.search(q, k)
        pad = k - logits.shape[1]
        if pad > 0:
            logits = np.concatenate([logits, np.full((len(q), pad), -np.inf, np.float32)], 1)
            rows = np.concatenate([rows, np.full((len(q), pad), -1, np.int64)], 1)
        return logits, rows

    # -- by identity ------------------------------------------------------------------

    def identities(self, q: Queries, k: int, rule: str, ann: Candidates | None) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, identity positions)`` float32/int64 ``(Q, min(k, M))``, best first;
        identity positions index ``grouping().ident_ids`` (``-1`` pads)."""
        g = self.grouping()
        k = min(k, g.ident_ids.size)
        if ann is not None:
            n_rows = min(len(self), max(HNSW_MIN_CANDIDATES, 4 * k * min(g.r_max, 8)))
            rows = ann.candidates(q, n_rows, self.ids)
            cand = np.where(rows >= 0, g.row_ident[np.maximum(rows, 0)], -1)
            return self.score_identities(q, cand, k, rule)
        if g.r_max == 1 or rule == "max":
            # the best (k - 1) * r + 1 rows hold the best k identities under max; one row
            # more tells whether a tie at the boundary could hide a lower identity
            n_rows = min(len(self), (k - 1) * g.r_max + 2)
            if n_rows <= MAX_ROW_CANDIDATES:
                scores, rows = self.exact.search(q, n_rows)
                idents = g.row_ident[rows]
                out_s = np.full((len(q), k), -np.inf, np.float32)
                out_i = np.full((len(q), k), -1, np.int64)
                for i in range(len(q)):
                    _, first = np.unique(idents[i], return_index=True)
                    first = np.sort(first)
                    if first.size > k and scores[i, first[k]] == scores[i, first[k - 1]] or (
                        n_rows < len(self) and first.size >= k and scores[i, -1] == scores[i, first[k - 1]]
                    ):
                        return self.aggregate(q, k, rule)  # a tie at the boundary: settle it over every row
                    first = first[:k]
                    out_s[i, : first.size] = scores[i, first]
                    out_i[i, : first.size] = idents[i, first]
                return tie_order(out_s, out_i)
        return self.aggregate(q, k, rule)

    def aggregate(self, q: Queries, k: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
        """Exact per-identity scores over every row (scatter-max or mean), then top-k."""
        g = self.grouping()
        m = g.ident_ids.size
        if "torch" not in sys.modules:
            return self.aggregate_numpy(q, k, rule)
        import torch

        row_ident = torch.from_numpy(g.row_ident)
        counts = torch.from_numpy(g.counts.astype(np.float32))
        step = max(1, (1 << 24) // max(1, m))
        out_s, out_i = [], []
        for a in range(0, len(q), step):
            sub = q.subset(slice(a, a + step))
            fill = -np.inf if rule == "max" else 0.0
            acc = torch.full((len(sub), m), fill, dtype=torch.float32)
            for start, logits in self.exact.chunks(sub):
                t = torch.from_numpy(logits)
                idx = row_ident[start : start + t.shape[1]].expand(t.shape[0], -1)
                if rule == "max":
                    acc.scatter_reduce_(1, idx, t, reduce="amax")
                else:
                    acc.scatter_add_(1, idx, t)
            if rule == "mean":
                acc /= counts
            kth = torch.topk(acc, k, dim=1).values[:, -1:]
            s, i = best_first(acc.numpy(), kth.numpy(), k)
            out_s.append(s)
            out_i.append(i)
        return np.concatenate(out_s), np.concatenate(out_i)

    def aggregate_numpy(self, q: Queries, k: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`aggregate` without torch: every row's logits for a block of queries,
        reordered by identity and reduced per identity (``reduceat``)."""
        g = self.grouping()
        n = len(self)
        step = max(1, (1 << 24) // max(1, n))
        out_s, out_i = [], []
        for a in range(0, len(q), step):
            sub = q.subset(slice(a, a + step))
            full = np.empty((len(sub), n), np.float32)
            for start, logits in self.exact.chunks(sub):
                full[:, start : start + logits.shape[1]] = logits
            grouped = full[:, g.order]
            if rule == "max":
                per = np.maximum.reduceat(grouped, g.offsets[:-1], axis=1)
            else:
                per = (np.add.reduceat(grouped, g.offsets[:-1], axis=1) / g.counts).astype(np.float32)
            s, i = best_first(per, topk(per, k)[0][:, -1:], k)
            out_s.append(s)
            out_i.append(i)
        return np.concatenate(out_s), np.concatenate(out_i)

    def score_identities(self, q: Queries, cand: np.ndarray, k: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
        """Exact rule scores of the candidate identities ``cand (Q, C)`` (``-1`` ignored)
        over all their references, then the best ``k`` of them."""
        g = self.grouping()
        out_s = np.full((len(q), k), -np.inf, np.float32)
        out_i = np.full((len(q), k), -1, np.int64)
        stored = self.matrix.data
        for i in range(len(q)):
            idents = np.unique(cand[i][cand[i] >= 0])
            if idents.size == 0:
                continue
            starts, stops = g.offsets[idents], g.offsets[idents + 1]
            rows = np.concatenate([g.order[a:b] for a, b in zip(starts, stops)])
            logits = self.scorer.logits_at(q.subset(slice(i, i + 1)), stored, rows[None])[0]
            bounds = np.concatenate([[0], np.cumsum(stops - starts)[:-1]])
            if rule == "max":
                per = np.maximum.reduceat(logits, bounds)
            else:
                per = np.add.reduceat(logits, bounds) / (stops - starts)
            order = np.argsort(-per, kind="stable")[:k]
            out_s[i, : order.size] = per[order]
            out_i[i, : order.size] = idents[order]
        return out_s, out_i


def best_first(scores: np.ndarray, kth: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of ``scores (Q, M)`` given each row's ``k``-th best value
    ``kth (Q, 1)``, best first, equal scores by lower column (every column tied with the
    ``k``-th is considered, so the choice at the boundary does not depend on the top-k
    kernel): ``(scores float32, columns int64)`` ``(Q, k)``."""
    out_s = np.empty((scores.shape[0], k), np.float32)
    out_i = np.empty((scores.shape[0], k), np.int64)
    for i in range(scores.shape[0]):
        cols = np.nonzero(scores[i] >= kth[i, 0])[0]
        order = np.lexsort((cols, -scores[i, cols]))[:k]
        out_s[i], out_i[i] = scores[i, cols[order]], cols[order]
    return out_s, out_i


def tie_order(scores: np.ndarray, idents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``(scores, identity positions)`` ``(Q, k)`` reordered best first, equal scores
    by lower identity position (``-1`` pads stay last)."""
    key = np.where(idents < 0, np.iinfo(np.int64).max, idents)
    order = np.lexsort((key, -scores), axis=1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(idents, order, 1)
