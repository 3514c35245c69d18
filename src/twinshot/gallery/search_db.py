"""The search stage inside the database, for galleries bigger than the process's memory.

With ``search="database"`` a :class:`~twinshot.gallery.Gallery` on PostgreSQL + pgvector
or Milvus never loads its rows (no ``load_rows``, no row matrix in memory). For each call,
:meth:`DatabaseSearch.view` asks the database for every query's nearest rows by the
distance that orders like the model head (cosine distance for a cosine head, L2 for a
euclidean one), fetches **all** rows of the candidate identities when an identity rule
(``max``, ``mean``) is asked for, and returns a small :class:`RowSearch` over just those
rows. The gallery then searches, scores (head logits) and decides on that view with the
very code of the in-memory path, so scores, ties (lower image id first), ``-1`` padding
and the identity rules are the same.

Exactness. When the database search is exact (PostgreSQL's ``ORDER BY embedding <op> q``
with index scans off; Milvus with a ``FLAT`` index), the view holds the exact answer: a
query's ``n`` nearest rows are fetched and the view is accepted only when the ``k``-th best
fetched row (or identity, under its rule) beats the best any unfetched row could score (the
``n``-th fetched distance, widened by :func:`tolerance` for both sides' float32 rounding);
otherwise ``n`` grows four-fold and the query is asked again. A row not fetched is farther
than every fetched one, so an identity none of whose rows was fetched scores at most that
bound under ``max`` and under ``mean`` (a mean is at most the max). So results equal the
in-memory exact search. With the database's ANN index (``index="hnsw"``: pgvector HNSW,
or Milvus's own index) one fetch proposes the candidates, scored exactly: scores are exact,
recall is approximate (measured in docs/benchmarks_scale.md).

The first fetch is ``k + max(k, 32)`` rows; Milvus answers at most 16,384 per query, so a
query whose boundary is still unsettled there (more than 16,384 rows tied or nearly tied
with its ``k``-th) is answered from those. Counting the rows (``n_embeddings``) is a full
count in PostgreSQL, so searches do not count: an empty view means an empty gallery.

Heads whose logit is no monotone function of such a distance (Koch's ``weighted_l1``), or
whose scale is negative, cannot be searched by the database: refused with a one-line
:class:`~twinshot.errors.ConfigError`. SQLite has no vector index: its galleries are
always searched in memory.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from twinshot.errors import ConfigError
from twinshot.gallery.index import HNSWConfig, Queries, Scorer
from twinshot.gallery.search import HNSW_MIN_CANDIDATES, RowSearch
from twinshot.gallery.store import StoredRows
from twinshot.gallery.stores.base import Nearest, SearchableStore

#: Where a gallery's rows are searched: loaded into memory, inside the database, or
#: ``"auto"`` (:func:`choose_search`).
SEARCH_KINDS = ("auto", "memory", "database")
#: ``search="auto"`` leaves the rows in the database when their float32 vectors would take
#: more than this many bytes in memory (2 GiB: about 4M rows of 128-d).
MEMORY_BUDGET = 2 * 1024**3
#: Rows fetched per query at first beyond ``k`` (at least ``k`` more); grows four-fold.
FIRST_MARGIN = 32


def tolerance(dim: int) -> float:
    """How far (cosine, or relative L2) the database's float32 distance and ours may differ
    from the exact one: ``1e-4`` plus a float32 summation bound ``8 D 2^-24`` (6e-5 at
    D = 128). Only decides when to fetch more; never changes a score."""
    return 1e-4 + 8.0 * dim * 2.0**-24


def choose_search(search: str, store: Any, scorer: Scorer, index: str = "auto", budget: int = MEMORY_BUDGET) -> str:
    """Resolve ``search="auto"``: ``"database"`` when the store can search itself (PostgreSQL,
    Milvus), the head's logit follows a distance it orders by (cosine or euclidean), an exact
    search was not asked of an approximate-only collection, and the rows' float32 vectors
    would take more than ``budget`` bytes; else ``"memory"``. Other values pass through."""
    if search != "auto":
        return search
    if not isinstance(store, SearchableStore) or scorer.kind not in ("cosine", "euclidean") or scorer.sign < 0:
        return "memory"
    if index == "exact" and not store.exact_search:
        return "memory"
    return "database" if store.count_embeddings() * store.dim * 4 > budget else "memory"


class DatabaseSearch:
    """Searches a gallery inside its database; see the module docstring.

    Args:
        scorer: the model head's scorer.
        store: a store that can search itself (:class:`SearchableStore`).
        head_name: the head's registered name (for messages).
        index: ``"auto"`` (exact when the database can search exactly, else its ANN
            index), ``"exact"`` or ``"hnsw"`` (the database's ANN index).
        hnsw: ``ef_search`` for the ANN index.
    """

    def __init__(self, scorer: Scorer, store: Any, head_name: str, *, index: str = "auto", hnsw: HNSWConfig | None = None) -> None:
        if not isinstance(store, SearchableStore):
            raise ConfigError(
                f"{store.path}: search='database' needs a PostgreSQL or Milvus gallery; an SQLite gallery is "
                f"searched in memory (SQLite has no vector index)"
            )
        if scorer.kind not in ("cosine", "euclidean"):
            raise ConfigError(
                f"search='database' needs a cosine or euclidean head (its logit must follow a distance the database "
                f"orders by); this model's head is {head_name!r}: search in memory (search='memory')"
            )
        if scorer.sign < 0:
            raise ConfigError(f"search='database' needs a head whose logit grows with similarity; this {head_name} head has a negative scale")
        metric = store.meta().get("metric")
        if metric is not None and (scorer.kind, metric) not in (("cosine", "COSINE"), ("euclidean", "L2")):
            raise ConfigError(f"{store.path}: the collection's metric {metric} does not order like this model's {head_name} head")
        if index == "exact" and not store.exact_search:
            raise ConfigError(
                f"{store.path}: this database cannot search exactly (its vector index is approximate; a Milvus gallery "
                f"needs ?index=FLAT); use index='hnsw' or 'auto' for its approximate index, or search='memory'"
            )
        self.scorer = scorer
        self.store = store
        self.exact = index != "hnsw" and bool(store.exact_search)
        self.hnsw = hnsw or HNSWConfig()
        self.tol = tolerance(store.dim)

    @property
    def kind(self) -> str:
        """What searches: ``"database-exact"`` or ``"database-ann"``."""
        return "database-exact" if self.exact else "database-ann"

    # -- views -------------------------------------------------------------------------

    def view(self, q: Queries, k: int, rule: str | None, n_identities: int | None = None) -> RowSearch:
        """A :class:`RowSearch` over the rows that hold every query's best ``k`` rows
        (``rule=None``) or best ``k`` identities under ``rule`` (with all their rows). When
        the gallery holds fewer than ``k`` rows (identities), an exact view holds them all.
        ``n_identities`` (the gallery's count, if known) stops an exact search that cannot
        find ``k`` identities from asking again."""
        parts = [self._candidates(q.raw[i], k, rule, n_identities) for i in range(len(q))]
        return RowSearch(self.scorer, union(parts, self.store.dim), self.store.dim)

    def identity_view(self, identity_ids: Sequence[int]) -> RowSearch:
        """A :class:`RowSearch` over every row of the given identities."""
        return RowSearch(self.scorer, self.store.rows_of_identities(identity_ids), self.store.dim)

    def _candidates(self, query: np.ndarray, k: int, rule: str | None, n_identities: int | None) -> StoredRows:
        """One query's candidate rows (see :meth:`view`)."""
        n = k + max(k, FIRST_MARGIN) if self.exact else max(HNSW_MIN_CANDIDATES, 2 * k if rule is None else 16 * k)
        cap = self.store.max_candidates
        while True:
            near: Nearest = self.store.nearest_rows(query[None], n, self.scorer.kind, exact=self.exact, ef_search=max(self.hnsw.ef_search, n))[0]
            rows = near.rows if rule is None else self.store.rows_of_identities(np.unique(near.rows.identity_ids))
            if not self.exact or near.exhausted or near.rows.ids.size == 0 or (cap is not None and n >= cap):
                return rows
            want = k if rule is None or n_identities is None else min(k, n_identities)
            if self._settled(query, rows, float(near.distances[-1]), want, rule):
                return rows
            n = 4 * n if cap is None else min(4 * n, cap)

    def _settled(self, query: np.ndarray, rows: StoredRows, last: float, k: int, rule: str | None) -> bool:
        """Whether the ``k``-th best of ``rows`` (rows, or identities under ``rule``) scores
        above anything a row farther than database distance ``last`` could score."""
        good, bound = self._goodness(query, rows.vectors), self._bound(last)
        if rule is not None:
            idents, inverse = np.unique(rows.identity_ids, return_inverse=True)
            if rule == "max":
                per = np.full(idents.size, -np.inf)
                np.maximum.at(per, inverse, good)
            else:
                per = np.bincount(inverse, good, idents.size) / np.bincount(inverse, minlength=idents.size)
            good = per
        if good.size < k:
            return False
        return bool(np.sort(good)[-k] > bound)

    def _goodness(self, query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """float64 ``(n,)``, increasing with the head's logit: the cosine for a cosine
        head, minus ``sqrt(d^2 + 1e-12)`` (what the euclidean head scales) for a euclidean one."""
        v = vectors.astype(np.float64)
        q = query.astype(np.float64)
        if self.scorer.kind == "cosine":
            norms = np.maximum(np.linalg.norm(v, axis=1), 1e-8) * max(float(np.linalg.norm(q)), 1e-8)
            return (v @ q) / norms
        return -np.sqrt(np.einsum("nd,nd->n", v - q, v - q) + 1e-12)

    def _bound(self, last: float) -> float:
        """The best goodness a row at database distance ``last`` or farther could have."""
        if self.scorer.kind == "cosine":
            return 1.0 - last + self.tol
        return -max(last * (1.0 - self.tol) - self.tol, 0.0)


def union(parts: Sequence[StoredRows], dim: int) -> StoredRows:
    """The rows of ``parts`` without repeats, in image-id order."""
    if not parts:
        return StoredRows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, dim), np.float32))
    ids = np.concatenate([p.ids for p in parts])
    keep = np.unique(ids, return_index=True)[1]
    return StoredRows(
        ids[keep],
        np.concatenate([p.identity_ids for p in parts])[keep],
        np.ascontiguousarray(np.concatenate([p.vectors for p in parts])[keep], dtype=np.float32),
    )
