"""Scoring queries against every enrolled embedding: exact search, and an approximate
faiss HNSW index for very large galleries.

Scores are the model head's **logits** (higher is more alike). What makes search fast is
that for the common heads the logits of one query against all ``N`` rows are one matrix
product over a *stored form* of the embeddings, prepared once when the gallery opens:

* ``cosine``: rows are L2-normalised, ``rank = q_n @ G_n.T`` and ``logit = scale * rank + bias``;
* ``euclidean``: rows are stored as ``[g, |g|^2]`` and queries as ``[2 q, -1]``, so one
  product gives ``2 q.g - |g|^2 = |q|^2 - |q - g|^2``, from which the distance and the
  logit follow for the few rows kept;
* any other head (Koch's ``weighted_l1`` has no matrix-product form): the head's own
  ``pairwise_logits`` evaluated exactly in chunks of queries x rows, bounded in memory but
  ``D`` times more work than a product. Documented as the slow path.

Top-k selection works on chunks of at most :data:`CHUNK_ELEMENTS` scores, by block maxima
(:func:`topk`: exact, and it reads each score once in a vectorised reduction rather than
selecting over all of them). When torch is already imported it uses torch's kernels; when
it is not (a gallery running an ONNX encoder), numpy's, so search never imports torch.

The head is given either as a torch :class:`twinshot.models.heads.Head` or as a
:class:`twinshot.export.numpy_heads.NumpyHead` (what an ONNX export's sidecar describes).
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from twinshot.errors import ConfigError, TwinshotError
from twinshot.export.numpy_heads import NumpyHead
from twinshot.gallery.search_engine import EnginePlan, SearchEngine, resolve_plan

#: At most this many scores (queries x rows) are materialised at once (8 MB: a chunk's
#: scores are still in cache when the top-k reads them; measured best of 1M-8M elements).
CHUNK_ELEMENTS = 1 << 21
#: Element budget (queries x rows x D) for heads without a matrix-product form.
GENERIC_ELEMENTS = 1 << 24
#: Euclidean pairs whose squared distance, from the product form ``|q|^2 - (2 q.g - |g|^2)``,
#: is below this fraction of ``|q|^2 + |g|^2`` are recomputed from exact differences: in
#: float32 that form cancels for near-identical embeddings (an image against itself scored
#: up to 0.4 logits off for embeddings of norm 100). Beyond it the form's relative error on
#: the distance is under ~1e-4.
RESCORE_BELOW = 1e-2


def import_faiss() -> Any:
    """Import faiss, or explain how to install it."""
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError:
        raise TwinshotError(
            "approximate search needs faiss, which is not installed: pip install 'twinshot[index]'"
        ) from None
    return faiss


@dataclass(frozen=True)
class Queries:
    """Queries prepared for a scorer.

    Attributes:
        raw: float32 ``(Q, D)`` embeddings as the model produced them.
        mat: float32 ``(Q, W)`` the form multiplied with the stored rows.
        sqnorm: float32 ``(Q,)`` squared norms of ``raw`` (euclidean only; else zeros).
    """

    raw: np.ndarray
    mat: np.ndarray
    sqnorm: np.ndarray

    def __len__(self) -> int:
        return int(self.raw.shape[0])

    def subset(self, rows: slice) -> Queries:
        return Queries(self.raw[rows], self.mat[rows], self.sqnorm[rows])


def _torch_loaded() -> bool:
    """Whether torch is already imported (then its faster top-k is used; else numpy)."""
    return "torch" in sys.modules


class Scorer:
    """Turns a model head into fast scoring against a stored matrix.

    ``rank`` values are increasing in the logit for each query (so top-k on them is top-k on
    logits); ``to_logits`` maps the kept ranks back to exact logits.

    Args:
        head: the model's head: a torch :class:`twinshot.models.heads.Head` (its current
            ``scale``/``bias`` are read once) or a
            :class:`twinshot.export.numpy_heads.NumpyHead`.
    """

    def __init__(self, head: Any) -> None:
        if isinstance(head, NumpyHead):
            self.head: Any = head
            self.scale, self.bias = float(head.scale), float(head.bias)
            self.kind = head.name if head.name in ("cosine", "euclidean") else "generic"
            self._numpy_head = True
        else:
            from twinshot.models.heads import CosineHead, EuclideanHead

            # the gallery's matrices live on the CPU: score with a CPU copy of the head
            on_cpu = all(p.device.type == "cpu" for p in head.parameters())
            self.head = head if on_cpu else copy.deepcopy(head).cpu().eval()
            self.scale = float(head.scale.detach())
            self.bias = float(head.bias.detach())
            if isinstance(head, CosineHead):
                self.kind = "cosine"
            elif isinstance(head, EuclideanHead):
                self.kind = "euclidean"
            else:
                self.kind = "generic"
            self._numpy_head = False
        self.sign = 1.0 if self.scale >= 0 else -1.0

    # -- stored form ---------------------------------------------------------------------

    def width(self, dim: int) -> int:
        """Columns of the stored form for embeddings of dimension ``dim``."""
        return dim + 1 if self.kind == "euclidean" else dim

    def prepare(self, vectors: np.ndarray, *, copy: bool = True) -> np.ndarray:
        """float32 ``(n, D)`` embeddings -> float32 ``(n, W)`` stored form. With
        ``copy=False`` a cosine head normalises ``vectors`` in place (no second copy)."""
        v = np.asarray(vectors, dtype=np.float32)
        if self.kind == "cosine":
            norms = np.maximum(np.sqrt(np.einsum("nd,nd->n", v, v)), 1e-8)[:, None]
            if copy or not v.flags.writeable:
                return v / norms
            v /= norms
            return v
        if self.kind == "euclidean":
            return np.concatenate([v, np.einsum("nd,nd->n", v, v)[:, None]], axis=1)
        return np.ascontiguousarray(v)

    def prepare_queries(self, queries: np.ndarray) -> Queries:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        sq = np.einsum("qd,qd->q", q, q).astype(np.float32)
        if self.kind == "cosine":
            mat = q / np.maximum(np.sqrt(sq)[:, None], 1e-8)
        elif self.kind == "euclidean":
            mat = np.concatenate([2.0 * q, -np.ones((q.shape[0], 1), np.float32)], axis=1)
        else:
            mat = q
        return Queries(q, np.ascontiguousarray(mat, dtype=np.float32), sq)

    def vectors_of(self, stored: np.ndarray) -> np.ndarray:
        """The embeddings part of the stored form (what an approximate index indexes)."""
        return stored[:, :-1] if self.kind == "euclidean" else stored

    # -- scoring -------------------------------------------------------------------------

    def rank(self, q: Queries, stored: np.ndarray, engine: SearchEngine | None = None) -> np.ndarray:
        """``(Q, C)`` ranking scores of every query against ``stored (C, W)`` (the product
        by ``engine.matmul`` when given)."""
        if self.kind == "generic":
            return self._generic_logits(q.raw, stored)
        r = _matmul_t(q.mat, stored) if engine is None else engine_product(engine, q.mat, stored)
        return r if self.sign > 0 else np.negative(r, out=r)

    def exact_rank(self, q: Queries, stored: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Ranking scores float32 ``(Q, R)`` of query ``i`` against rows ``rows[i, j]``
        (all valid), by one fixed routine (an ``einsum`` over the gathered rows: the same
        values whichever engine proposed the rows, equal rows get equal values)."""
        r = np.einsum("qw,qrw->qr", q.mat, stored[rows])
        return (r if self.sign > 0 else -r).astype(np.float32, copy=False)

    def to_logits(self, q: Queries, rank: np.ndarray) -> np.ndarray:
        """Logits from ranking scores ``(Q, R)``; ``-inf`` ranks stay ``-inf``. Exact for
        cosine heads; for euclidean ones :meth:`logits` and :meth:`logits_at` recompute the
        near-identical pairs, where the product form cancels."""
        rank = np.asarray(rank, dtype=np.float32)
        if self.kind == "generic":
            return rank
        with np.errstate(invalid="ignore"):
            if self.kind == "cosine":
                out = abs(self.scale) * rank + self.bias
            else:
                dot = self.sign * rank
                sim = -np.sqrt(np.maximum(q.sqnorm[:, None] - dot, 0.0) + 1e-12)
                out = self.scale * sim + self.bias
        return np.where(np.isneginf(rank), -np.inf, out).astype(np.float32)

    def logits(self, q: Queries, stored: np.ndarray, engine: SearchEngine | None = None) -> np.ndarray:
        """``(Q, C)`` exact logits of every query against ``stored (C, W)`` (the product by
        ``engine.matmul`` when given)."""
        rank = self.rank(q, stored, engine)
        if self.kind != "euclidean":
            return self.to_logits(q, rank)
        sq = np.subtract(q.sqnorm[:, None], rank, out=rank) if self.sign > 0 else np.add(q.sqnorm[:, None], rank, out=rank)
        bound = np.add.outer(q.sqnorm * RESCORE_BELOW, stored[:, -1] * np.float32(RESCORE_BELOW))
        qi, ci = np.nonzero(sq <= bound)
        sq[qi, ci] = self._exact_sq(q, stored, qi, ci)
        return self._euclidean_logits(sq)

    def _euclidean_logits(self, sq: np.ndarray) -> np.ndarray:
        """``scale * -sqrt(sq + 1e-12) + bias`` float32, in place on float32 ``sq``."""
        sq = np.maximum(sq, 0.0, out=sq)
        sq += np.float32(1e-12)
        np.sqrt(sq, out=sq)
        sq *= np.float32(-self.scale)
        sq += np.float32(self.bias)
        return sq.astype(np.float32, copy=False)

    def _exact_sq(self, q: Queries, stored: np.ndarray, qi: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Squared distances float32 ``(P,)`` of queries ``qi`` and stored rows ``rows`` (both
        ``(P,)``), from exact differences, in blocks of at most :data:`CHUNK_ELEMENTS` values."""
        out = np.empty(qi.shape[0], np.float32)
        step = max(1, CHUNK_ELEMENTS // max(1, stored.shape[1]))
        for a in range(0, qi.shape[0], step):
            diff = stored[rows[a : a + step], :-1] - q.raw[qi[a : a + step]]
            out[a : a + step] = np.einsum("pd,pd->p", diff, diff)
        return out

    def logits_at(self, q: Queries, stored: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Logits of query ``i`` against rows ``rows[i, j]`` (``-1``: none, gives ``-inf``).

        Args:
            rows: int64 ``(Q, R)`` row positions into ``stored``.

        Returns:
            float32 ``(Q, R)``.
        """
        valid = rows >= 0
        safe = np.where(valid, rows, 0)
        if self.kind == "generic":
            out = np.empty(rows.shape, np.float32)
            for i in range(rows.shape[0]):
                out[i] = self._generic_logits(q.raw[i : i + 1], stored[safe[i]])[0]
        elif self.kind == "euclidean":  # exact differences: no cancellation for near-identical pairs
            qi = np.broadcast_to(np.arange(rows.shape[0])[:, None], rows.shape).ravel()
            out = self._euclidean_logits(self._exact_sq(q, stored, qi, safe.ravel()).reshape(rows.shape))
        else:
            r = np.einsum("qw,qrw->qr", q.mat, stored[safe])
            out = self.to_logits(q, r if self.sign > 0 else -r)
        return np.where(valid, out, -np.inf).astype(np.float32)

    def _generic_logits(self, queries: np.ndarray, stored: np.ndarray) -> np.ndarray:
        """The head's own pairwise logits, chunked over queries and rows."""
        n, d = stored.shape
        out = np.empty((queries.shape[0], n), np.float32)
        step_n = max(1, min(n, GENERIC_ELEMENTS // max(1, d)))
        step_q = max(1, GENERIC_ELEMENTS // max(1, step_n * d))
        if self._numpy_head:
            for j in range(0, n, step_n):
                for i in range(0, queries.shape[0], step_q):
                    out[i : i + step_q, j : j + step_n] = self.head.pairwise_logits(queries[i : i + step_q], stored[j : j + step_n])
            return out
        import torch

        with torch.no_grad():
            for j in range(0, n, step_n):
                g = torch.from_numpy(np.ascontiguousarray(stored[j : j + step_n]))
                for i in range(0, queries.shape[0], step_q):
                    qq = torch.from_numpy(np.ascontiguousarray(queries[i : i + step_q]))
                    out[i : i + step_q, j : j + step_n] = self.head.pairwise_logits(qq, g).float().numpy()
        return out


def _matmul_t(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b.T`` for float32 ``a (Q, W)``, ``b (C, W)``. With torch loaded, through torch:
    a numpy (OpenBLAS) product followed by torch work (the top-k) makes the two thread pools
    fight for the cores (measured on 2 cores: 100 queries x 10k rows took 8 ms after a numpy
    product and 3.2 ms after a torch one; 100 x 1M, 458 ms and 237 ms). Without torch
    everything is numpy."""
    if _torch_loaded():
        import torch

        return (torch.from_numpy(a) @ torch.from_numpy(b).T).numpy()
    return a @ b.T


def engine_product(engine: SearchEngine, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b.T`` float32 ``(Q, C)`` by ``engine.matmul``."""
    if engine.matmul == "torch":
        import torch

        return (torch.from_numpy(a) @ torch.from_numpy(b).T).numpy()
    return a @ b.T


def engine_topk(engine: SearchEngine, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`topk` by ``engine.topk``."""
    k = min(k, scores.shape[1])
    if engine.topk == "torch":
        import torch

        values, cols = _block_topk_torch(torch.from_numpy(np.ascontiguousarray(scores)), k)
        return values.numpy(), cols.numpy().astype(np.int64, copy=False)
    return _block_topk_numpy(np.ascontiguousarray(scores), k)


def chunked_topk(engine: SearchEngine, qmat: np.ndarray, stored: np.ndarray, k: int, sign: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``min(k, N)`` rows of ``stored (N, W)`` with the highest ``sign * qmat @ row``
    for each query of ``qmat (Q, W)``, by ``engine``, in chunks of at most
    ``engine.chunk_elements`` scores: ``(ranks float32, rows int64)`` ``(Q, min(k, N))``.
    The engine's own float32 ranks: candidates, not final scores."""
    n = stored.shape[0]
    step = max(1024, engine.chunk_elements // max(1, qmat.shape[0]))
    best_s: list[np.ndarray] = []
    best_r: list[np.ndarray] = []
    for start in range(0, n, step):
        r = engine_product(engine, qmat, stored[start : start + step])
        if sign < 0:
            np.negative(r, out=r)
        s, rows = engine_topk(engine, r, k)
        best_s.append(s)
        best_r.append(rows + start)
    if len(best_s) == 1:
        return best_s[0], best_r[0]
    rank, pos = engine_topk(engine, np.concatenate(best_s, 1), k)
    return rank, np.take_along_axis(np.concatenate(best_r, 1), pos, 1)


#: Candidates beyond ``k`` the engine proposes per query (at least ``k`` more): the exact
#: rescoring settles the boundary of the top-k among them (see :class:`ExactIndex`).
SEARCH_MARGIN = 16


def _calibrate_above() -> int:
    from twinshot.gallery import search_engine

    return search_engine.CALIBRATE_ABOVE


#: Columns per block of the block-maximum top-k (see :func:`topk`).
TOPK_BLOCK = 32
#: Below this many scores a plain top-k is faster than the two passes (measured: 1 x 10k).
TOPK_BLOCK_MIN = 1 << 17


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest values of each row of float32 ``scores (Q, C)`` and their columns,
    best first: ``(values float32 (Q, k), columns int64 (Q, k))`` with ``k <= C``.

    Exact, in two passes over wide rows: the columns are dealt into ``C / 32`` blocks of
    :data:`TOPK_BLOCK` (block ``b`` holds columns ``b, b + C/32, ...``, so its maximum is
    one vectorised element-wise maximum over 32 contiguous slices), the ``k`` best blocks by
    their maximum are kept, then the ``k`` best of those blocks' columns. The ``k`` best
    values lie in those blocks: a block holding one of them has a maximum at least the
    ``k``-th best value, and at most ``k`` blocks can. Selection thus works on
    ``C / 32 + 32 k`` values instead of ``C``.
    ``torch`` when it is already imported (faster), else ``numpy``."""
    k = min(k, scores.shape[1])
    if _torch_loaded():
        import torch

        values, cols = _block_topk_torch(torch.from_numpy(np.ascontiguousarray(scores)), k)
        return values.numpy(), cols.numpy().astype(np.int64, copy=False)
    return _block_topk_numpy(np.ascontiguousarray(scores), k)


def _block_topk_torch(s: Any, k: int) -> tuple[Any, Any]:
    import torch

    q, c = s.shape
    blocks = c // TOPK_BLOCK
    if blocks < 4 * k or k == 0 or q * c < TOPK_BLOCK_MIN:
        return torch.topk(s, k, dim=1)
    body = blocks * TOPK_BLOCK
    # block b holds the columns b, b + blocks, b + 2 * blocks, ...: the maximum over the
    # middle axis is an element-wise maximum of TOPK_BLOCK contiguous rows (vectorised)
    block_max = s[:, :body].view(q, TOPK_BLOCK, blocks).amax(1)
    best_blocks = torch.topk(block_max, k, dim=1, sorted=False).indices
    cols = (best_blocks.unsqueeze(2) + blocks * torch.arange(TOPK_BLOCK)).view(q, k * TOPK_BLOCK)
    if body < c:  # the columns past the last whole block are always candidates
        cols = torch.cat([cols, torch.arange(body, c).expand(q, c - body)], 1)
    values, pos = torch.topk(torch.gather(s, 1, cols), k, dim=1)
    return values, torch.gather(cols, 1, pos)


def _block_topk_numpy(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    q, c = s.shape
    blocks = c // TOPK_BLOCK
    if blocks >= 4 * k and k > 0 and q * c >= TOPK_BLOCK_MIN:
        body = blocks * TOPK_BLOCK
        block_max = s[:, :body].reshape(q, TOPK_BLOCK, blocks).max(1)
        best_blocks = np.argpartition(block_max, blocks - k, axis=1)[:, blocks - k :]
        cols = (best_blocks[:, :, None] + blocks * np.arange(TOPK_BLOCK)).reshape(q, k * TOPK_BLOCK)
        if body < c:
            cols = np.concatenate([cols, np.broadcast_to(np.arange(body, c), (q, c - body))], 1)
        values, pos = _partition_topk(np.take_along_axis(s, cols, 1), k)
        return values, np.take_along_axis(cols, pos, 1).astype(np.int64, copy=False)
    return _partition_topk(s, k)


def _partition_topk(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each row by ``argpartition`` then a sort of the ``k`` kept, best first."""
    c = s.shape[1]
    if k < c:
        part = np.argpartition(s, c - k, axis=1)[:, c - k :]
    else:
        part = np.broadcast_to(np.arange(k), s.shape).copy()
    vals = np.take_along_axis(s, part, 1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(vals, order, 1), np.take_along_axis(part, order, 1).astype(np.int64, copy=False)


def _max_norm(rows: np.ndarray) -> float:
    """The largest L2 norm of the rows of ``rows (n, W)`` (0 for none), in float64."""
    if rows.shape[0] == 0:
        return 0.0
    return float(np.sqrt(np.max(np.einsum("nw,nw->n", rows, rows, dtype=np.float64))))


class StoredMatrix:
    """A growable float32 ``(N, W)`` matrix (capacity doubles, so appends are amortised O(n))."""

    def __init__(self, width: int, data: np.ndarray | None = None) -> None:
        self.width = width
        if data is None:
            data = np.zeros((0, width), np.float32)
        self._buf = np.ascontiguousarray(data, dtype=np.float32)
        self._n = self._buf.shape[0]
        self.max_norm = _max_norm(self._buf)

    def __len__(self) -> int:
        return self._n

    @property
    def data(self) -> np.ndarray:
        """The ``(N, W)`` rows (a view; valid until the next change)."""
        return self._buf[: self._n]

    def append(self, rows: np.ndarray) -> None:
        n = rows.shape[0]
        if self._n + n > self._buf.shape[0]:
            cap = max(self._n + n, 2 * self._buf.shape[0], 1024)
            buf = np.empty((cap, self.width), np.float32)
            buf[: self._n] = self._buf[: self._n]
            self._buf = buf
        self._buf[self._n : self._n + n] = rows
        self._n += n
        self.max_norm = max(self.max_norm, _max_norm(rows))

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the rows where ``mask`` (bool ``(N,)``) is True, in order."""
        kept = self.data[mask]
        self._buf = np.ascontiguousarray(kept)
        self._n = kept.shape[0]
        self.max_norm = _max_norm(self._buf)

    def nbytes(self) -> int:
        return int(self._buf.nbytes)


class ExactIndex:
    """Exact (brute-force) search over the stored matrix, in chunks of rows.

    The product and top-k run on the engine measured fastest on this machine
    (:mod:`twinshot.gallery.search_engine`), which only *proposes* candidates: each query's
    best ``k + margin`` rows by the engine's float32 ranks. Their ranks are then recomputed
    by one fixed routine (:meth:`Scorer.exact_rank`) and the best ``k`` kept, ties broken by
    row (lower first); when the margin might not cover every row that could tie or beat
    the ``k``-th (a rounding bound on the product decides), the query is redone with every
    row above that bound. So the rows, the scores and their order are the same whichever
    engine runs.

    Args:
        scorer: the head's scorer.
        matrix: the stored form of every row (see :meth:`Scorer.prepare`).
        engine: ``"auto"`` (measured, cached per machine), a name of
            :data:`twinshot.gallery.search_engine.ENGINES`, a ``SearchEngine`` or an
            ``EnginePlan``.
    """

    def __init__(self, scorer: Scorer, matrix: StoredMatrix, engine: str | SearchEngine | EnginePlan = "auto") -> None:
        self.scorer = scorer
        self.matrix = matrix
        self.engine = engine
        self._plan: EnginePlan | None = None

    def _row_chunk(self, n_queries: int) -> int:
        return max(1024, CHUNK_ELEMENTS // max(1, n_queries))

    def plan(self) -> EnginePlan:
        """The engines in use (resolved, and measured if need be, on first use)."""
        if self._plan is None or (self._plan.source == "default" and len(self.matrix) >= _calibrate_above()):
            self._plan = resolve_plan(self.engine, self.matrix.width, len(self.matrix))
        return self._plan

    def search(self, q: Queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``min(k, N)`` best rows for each query.

        Returns:
            ``(logits, rows)``: float32 and int64 ``(Q, min(k, N))``, best first (equal
            scores: lower row first).
        """
        stored = self.matrix.data
        n = stored.shape[0]
        k = min(k, n)
        if k == 0 or len(q) == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if self.scorer.kind == "generic":
            return self._search_generic(q, stored, k)
        engine = self.plan().for_queries(len(q))
        kk = min(n, k + max(k, SEARCH_MARGIN))
        rank, rows = chunked_topk(engine, q.mat, stored, kk, self.scorer.sign)
        exact = self.scorer.exact_rank(q, stored, rows)
        order = np.lexsort((rows, -exact), axis=1)
        exact, rows = np.take_along_axis(exact, order, 1), np.take_along_axis(rows, order, 1)
        if kk < n:
            # a row left out ranks at most rank.min() by the engine, so at most 2 err above
            # that by exact_rank; it could tie or beat the k-th unless floor + 2 err < k-th
            err = self._rounding_bound(q)
            unsure = np.nonzero(rank.min(axis=1) + 2 * err >= exact[:, k - 1])[0]
            for i in unsure:
                exact_i, rows_i = self._redo(engine, q.subset(slice(i, i + 1)), stored, k, float(exact[i, k - 1] - 2 * err[i]))
                exact[i, :k], rows[i, :k] = exact_i, rows_i
        exact, rows = exact[:, :k], rows[:, :k]
        if self.scorer.kind != "euclidean":
            return self.scorer.to_logits(q, exact), rows
        # rescore the kept rows from exact differences (the product form cancels for
        # near-identical ones) and order by those
        logits = self.scorer.logits_at(q, stored, rows)
        order = np.lexsort((rows, -logits), axis=1)
        return np.take_along_axis(logits, order, 1), np.take_along_axis(rows, order, 1)

    def _rounding_bound(self, q: Queries) -> np.ndarray:
        """float64 ``(Q,)``: a bound on the float32 rounding error of one product
        ``q.mat[i] @ row`` by any summation order: ``2 W u |q_i| max|row|``, ``u = 2^-24``."""
        w = q.mat.shape[1]
        qn = np.sqrt(np.einsum("qw,qw->q", q.mat, q.mat, dtype=np.float64))
        return 2.0 * w * 2.0**-24 * qn * self.matrix.max_norm + 1e-30

    def _redo(self, engine: SearchEngine, q: Queries, stored: np.ndarray, k: int, floor: float) -> tuple[np.ndarray, np.ndarray]:
        """One query's best ``k`` from every row the engine ranks at ``floor`` or above."""
        step = max(1024, engine.chunk_elements)
        found = []
        for start in range(0, stored.shape[0], step):
            r = engine_product(engine, q.mat, stored[start : start + step])[0]
            if self.scorer.sign < 0:
                r = -r
            found.append(np.nonzero(r >= floor)[0] + start)
        rows = np.concatenate(found)[None]
        exact = self.scorer.exact_rank(q, stored, rows)
        order = np.lexsort((rows, -exact), axis=1)[:, :k]
        return np.take_along_axis(exact, order, 1)[0], np.take_along_axis(rows, order, 1)[0]

    def _search_generic(self, q: Queries, stored: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Heads without a product form: the head's logits in chunks, top-k of each."""
        step = self._row_chunk(len(q))
        best_s: list[np.ndarray] = []
        best_r: list[np.ndarray] = []
        for start in range(0, stored.shape[0], step):
            s, r = topk(self.scorer.rank(q, stored[start : start + step]), k)
            best_s.append(s)
            best_r.append(r + start)
        if len(best_s) == 1:
            return self.scorer.to_logits(q, best_s[0]), best_r[0]
        rank, pos = topk(np.concatenate(best_s, 1), k)
        return self.scorer.to_logits(q, rank), np.take_along_axis(np.concatenate(best_r, 1), pos, 1)

    def chunks(self, q: Queries) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, logits (Q, C))`` for consecutive chunks of rows (exact logits), the
        products by the engine measured for this machine (see :meth:`plan`) in chunks of
        its size (what the ``mean`` rule and every-row aggregation read)."""
        stored = self.matrix.data
        if self.scorer.kind == "generic" or len(q) == 0:
            engine = None
            step = self._row_chunk(len(q))
        else:
            engine = self.plan().for_queries(len(q))
            step = max(1024, engine.chunk_elements // max(1, len(q)))
        for start in range(0, stored.shape[0], step):
            yield start, self.scorer.logits(q, stored[start : start + step], engine)

    def logits_at(self, q: Queries, rows: np.ndarray) -> np.ndarray:
        return self.scorer.logits_at(q, self.matrix.data, rows)


@dataclass(frozen=True)
class HNSWConfig:
    """faiss HNSW parameters. Measured on 1M clustered 128-d embeddings with m=16 and
    ef_construction=40 (``bench/gallery_bench.py``): recall@1 against exact search 0.77 at
    ef_search=128, 0.87 at 256, 0.95 at 512 (9 ms per query, exact: 38 ms); the defaults
    build a denser graph (slower to build, better recall).

    Attributes:
        m: neighbours per node (memory ~ ``m * 8`` bytes per row on top of the vectors).
        ef_construction: beam width while building (higher: better graph, slower build).
        ef_search: beam width while searching (higher: better recall, slower search).
        rebuild_fraction: rebuild when this fraction of indexed rows has been removed.
    """

    m: int = 32
    ef_construction: int = 64
    ef_search: int = 512
    rebuild_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.m < 2 or self.ef_construction < 1 or self.ef_search < 1:
            raise ConfigError("HNSW needs m >= 2, ef_construction >= 1 and ef_search >= 1")


class HNSWIndex:
    """An approximate candidate generator (faiss ``IndexHNSWFlat``) whose candidates are
    rescored exactly with the head, so every reported score is exact; only *which* rows are
    found is approximate (its recall against exact search is measured in the tests).

    Inner product on normalised rows for cosine heads, L2 for euclidean heads. Heads with
    no metric form (``weighted_l1``) or with a negative ``scale`` are refused.

    Rows are identified by image id; removed rows stay in the graph but are filtered out,
    and the graph is rebuilt when more than ``rebuild_fraction`` of it is removed.
    """

    kind = "hnsw"

    def __init__(self, scorer: Scorer, config: HNSWConfig | None = None) -> None:
        if scorer.kind == "generic":
            raise ConfigError(
                "approximate search needs a cosine or euclidean head; this model's head has no "
                "metric form, use exact search (index='exact')"
            )
        if scorer.sign < 0:
            raise ConfigError("approximate search needs a head whose logit increases with similarity (scale >= 0)")
        self.faiss = import_faiss()
        self.scorer = scorer
        self.config = config or HNSWConfig()
        self.index: Any = None
        self.ids = np.zeros(0, np.int64)  # image id of each faiss row
        self.dead = 0

    def _new_index(self, dim: int) -> Any:
        faiss = self.faiss
        metric = faiss.METRIC_INNER_PRODUCT if self.scorer.kind == "cosine" else faiss.METRIC_L2
        index = faiss.IndexHNSWFlat(dim, self.config.m, metric)
        index.hnsw.efConstruction = self.config.ef_construction
        return index

    def build(self, stored: np.ndarray, ids: np.ndarray) -> None:
        """Index every row of ``stored (N, W)`` whose image ids are ``ids (N,)``."""
        vectors = np.ascontiguousarray(self.scorer.vectors_of(stored), dtype=np.float32)
        self.index = self._new_index(vectors.shape[1])
        if vectors.shape[0]:
            self.index.add(vectors)
        self.ids = np.asarray(ids, np.int64).copy()
        self.dead = 0

    def sync(self, stored: np.ndarray, ids: np.ndarray) -> int:
        """Bring the index up to date with the current rows (``ids`` sorted): add the rows
        it lacks, count removed ones (filtered at search), rebuild when too many are gone.
        Returns how many rows were (re)indexed."""
        if self.index is None:
            self.build(stored, ids)
            return int(ids.size)
        present = np.isin(self.ids, ids)
        dead = int((~present).sum())
        if self.ids.size and dead > self.config.rebuild_fraction * self.ids.size:
            self.build(stored, ids)
            return int(ids.size)
        new = ~np.isin(ids, self.ids)
        if new.any():
            vectors = np.ascontiguousarray(self.scorer.vectors_of(stored[new]), dtype=np.float32)
            self.index.add(vectors)
            self.ids = np.concatenate([self.ids, ids[new]])
        self.dead = dead
        return int(new.sum())

    def candidates(self, q: Queries, n: int, ids: np.ndarray) -> np.ndarray:
        """Up to ``n`` candidate rows per query, as positions into the current rows (whose
        sorted image ids are ``ids``); ``-1`` pads. int64 ``(Q, n)``."""
        if self.index is None or self.index.ntotal == 0 or len(q) == 0:
            return np.full((len(q), n), -1, np.int64)
        fetch = min(int(self.index.ntotal), n + self.dead)
        self.index.hnsw.efSearch = max(self.config.ef_search, fetch)
        vectors = q.raw if self.scorer.kind == "euclidean" else q.mat
        _, labels = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), fetch)
        if ids.size == 0:
            return np.full((len(q), n), -1, np.int64)
        image_ids = np.where(labels >= 0, self.ids[np.maximum(labels, 0)], -1)
        pos = np.clip(np.searchsorted(ids, image_ids), 0, ids.size - 1)
        rows = np.where((image_ids >= 0) & (ids[pos] == image_ids), pos, -1)
        out = np.full((len(q), n), -1, np.int64)
        for i in range(len(q)):
            r = rows[i][rows[i] >= 0][:n]
            out[i, : r.size] = r
        return out

    def serialize(self) -> bytes:
        return bytes(self.faiss.serialize_index(self.index))

    def load(self, data: bytes, ids: np.ndarray) -> None:
        self.index = self.faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        self.ids = np.asarray(ids, np.int64).copy()
        self.dead = 0

    def nbytes(self) -> int:
        if self.index is None:
            return 0
        d = self.index.d
        return int(self.index.ntotal * (4 * d + 8 * self.config.m * 2))


def approximate_recall(exact_rows: np.ndarray, approx_rows: np.ndarray) -> float:
    """Recall@k: the mean fraction of each query's exact top-k rows that the approximate
    search also returned (``-1`` entries ignored)."""
    hits = 0
    total = 0
    for e, a in zip(exact_rows, approx_rows):
        e = e[e >= 0]
        total += e.size
        hits += np.isin(e, a[a >= 0]).sum()
    return float(hits / total) if total else math.nan
