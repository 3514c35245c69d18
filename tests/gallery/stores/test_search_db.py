"""Search inside the database (``search="database"``): on a real PostgreSQL + pgvector and
on Milvus Lite the results equal the in-memory exact search on the same data (image ids,
scores within float32 tolerance, ties by lower image id, identity rules), without ever
loading the rows; the approximate index; the refusals; the CLI and the HTTP service."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twinshot.cli.main import cli
from twinshot.errors import ConfigError, TwinshotError
from twinshot.gallery import Gallery
from twinshot.gallery.stores import open_store

from tests.gallery.helpers import clustered, saved_model


def _entries(dim: int) -> list[tuple[str, np.ndarray, None, None]]:
    """40 identities of 1-3 references, plus 12 identities that share one vector (exact
    ties, more of them than the first fetch holds) and one with a duplicate reference."""
    vecs = clustered(90, dim, clusters=5, seed=3)
    entries = [(f"p{i:02d}", vecs[2 * i : 2 * i + 1 + (i % 3)], None, None) for i in range(40)]
    tie = clustered(1, dim, clusters=5, seed=9)
    entries += [(f"tie{j:02d}", np.repeat(tie, 1 + (j % 2), 0), None, None) for j in range(12)]
    return entries


def _open_db(uri: str, model: Path, **kw: Any) -> Gallery:
    """A database-searched gallery whose store refuses to load its rows."""
    store = open_store(uri)

    def refuse() -> None:
        raise AssertionError("load_rows called on the database search path")

    store.load_rows = refuse  # type: ignore[method-assign]
    from twinshot.gallery.inference import load_embedder

    embedder, _ = load_embedder(model)
    return Gallery(store, embedder, search="database", **kw)


def _same(mem: Gallery, db: Gallery, q: np.ndarray) -> None:
    for k in (1, 5, 30, 500):
        a, b = mem.search_embeddings(q, k=k), db.search_embeddings(q, k=k)
        np.testing.assert_array_equal(a.image_ids, b.image_ids)  # ties in the same order: lower id first
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5)
        assert a.identities == b.identities
    for rule in ("max", "mean"):
        for k in (1, 4, 100):
            for x, y in zip(mem.identify_embeddings(q, k=k, rule=rule), db.identify_embeddings(q, k=k, rule=rule)):
                assert [c.identity for c in x.candidates] == [c.identity for c in y.candidates]
                np.testing.assert_allclose([c.score for c in x.candidates], [c.score for c in y.candidates], rtol=1e-5, atol=1e-5)
                assert x.identity == y.identity
    from twinshot.gallery.claims import claim_scores

    for name in ("p03", "tie01"):
        for rule in ("max", "mean"):
            sa, na = claim_scores(mem, name, q, rule)
            sb, nb = claim_scores(db, name, q, rule)
            assert na == nb
            np.testing.assert_allclose(sa, sb, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("head", ["cosine", "euclidean"])
def test_postgres_database_search_equals_memory(pg_uri: str, tmp_path: Path, head: str) -> None:
    model = saved_model(tmp_path / "model", head=head)
    with Gallery.create(pg_uri, model) as g:
        entries = _entries(g.dim)
        g.enroll_many(entries)
        dim = g.dim
    q = np.concatenate([clustered(6, dim, clusters=5, seed=4), entries[-1][1][:1], entries[5][1][:1]])
    with Gallery.open(pg_uri, model, index="exact") as mem, _open_db(pg_uri, model, index="exact") as db:
        assert db._rows is None and db.info()["index"] == "database-exact" and db.info()["search"] == "database"
        assert db.n_embeddings == mem.n_embeddings and len(db) == len(mem)
        _same(mem, db, q)
        # writes through the database-searched gallery are searched at once
        db.enroll_embeddings("new", q[:1])
        assert db.identify_embeddings(q[:1], k=1)[0].identity == "new" and db.n_embeddings == mem.n_embeddings + 1
        assert db.remove("new") == 1
        assert db.check()["embeddings"] == mem.n_embeddings
        # a stored score normalisation (s-norm over a cohort) re-ranks the same candidates
        import base64

        cohort = clustered(30, dim, clusters=5, seed=8)
        db._write_meta({"score_norm": json.dumps({"method": "snorm", "top_k": 10, "cohort_size": 30, "dim": dim}),
                        "score_norm_cohort": base64.b64encode(cohort.astype("<f4").tobytes()).decode("ascii")})
        for x, y in zip(mem.identify_embeddings(q, k=3), db.identify_embeddings(q, k=3)):
            assert [c.identity for c in x.candidates] == [c.identity for c in y.candidates]
            np.testing.assert_allclose([c.score for c in x.candidates], [c.score for c in y.candidates], rtol=1e-4, atol=1e-4)


def test_postgres_hnsw_candidates_are_rescored_exactly(pg_uri: str, tmp_path: Path) -> None:
    model = saved_model(tmp_path / "model")
    with Gallery.create(pg_uri, model) as g:
        vecs = clustered(400, g.dim, clusters=8, seed=1)
        g.enroll_many((f"id{i:03d}", vecs[i : i + 1], None, None) for i in range(400))
    q = clustered(10, vecs.shape[1], clusters=8, seed=2)
    with Gallery.open(pg_uri, model, index="exact") as mem, _open_db(pg_uri, model, index="hnsw") as db:
        assert db.build_index()["kind"] == "pgvector-hnsw" and db.info()["index"] == "database-ann"
        a, b = mem.search_embeddings(q, k=10), db.search_embeddings(q, k=10)
        every = mem.search_embeddings(q, k=400)
        # every score reported is the exact logit of the image reported
        for i in range(len(q)):
            exact = dict(zip(every.image_ids[i].tolist(), every.scores[i].tolist()))
            found = b.image_ids[i] >= 0
            np.testing.assert_allclose([exact[x] for x in b.image_ids[i][found].tolist()], b.scores[i][found], rtol=1e-5, atol=1e-5)
        recall = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a.image_ids.tolist(), b.image_ids.tolist())])
        assert recall >= 0.9


@pytest.mark.parametrize("where", ["lite", "server"])
def test_milvus_database_search_equals_memory(where: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """On a Lite file and through ``milvus-lite server`` (the gRPC client path a cluster uses)."""
    if where == "lite":
        uri = request.getfixturevalue("milvus_uri")
    else:
        uri = f"{request.getfixturevalue('milvus_server')}/gdb{os.getpid()}"
    model = saved_model(tmp_path / "model")
    flat = uri + "?index=FLAT"
    with Gallery.create(flat, model) as g:
        entries = _entries(g.dim)
        g.enroll_many(entries)
        dim = g.dim
    q = np.concatenate([clustered(6, dim, clusters=5, seed=4), entries[-1][1][:1]])
    # one process may open a Lite file once: the in-memory reference is an SQLite copy
    ref = tmp_path / "ref.db"
    with Gallery.create(ref, model) as mem:
        mem.enroll_many(entries)
        with _open_db(flat, model) as db:
            assert db.info()["index"] == "database-exact"
            a, b = mem.search_embeddings(q, k=30), db.search_embeddings(q, k=30)
            np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5)
            assert a.identities == b.identities  # image ids differ between stores; names and order agree
            for rule in ("max", "mean"):
                for x, y in zip(mem.identify_embeddings(q, k=4, rule=rule), db.identify_embeddings(q, k=4, rule=rule)):
                    assert [c.identity for c in x.candidates] == [c.identity for c in y.candidates], (rule, x, y)
                    np.testing.assert_allclose([c.score for c in x.candidates], [c.score for c in y.candidates], rtol=1e-5, atol=1e-5)


def test_milvus_with_an_approximate_index(milvus_uri: str, tmp_path: Path) -> None:
    model = saved_model(tmp_path / "model")
    with Gallery.create(milvus_uri, model) as g:  # the default HNSW index
        vecs = clustered(50, g.dim, clusters=5, seed=1)
        g.enroll_many((f"id{i}", v[None], None, None) for i, v in enumerate(vecs))
    with pytest.raises(ConfigError, match="cannot search exactly.*index=FLAT"):
        _open_db(milvus_uri, model, index="exact")
    with _open_db(milvus_uri, model) as db:
        assert db.info()["index"] == "database-ann"
        (res,) = db.identify_embeddings(vecs[:1], k=3)
        assert res.identity == "id0" and len(res.candidates) == 3


def test_refusals(pg_uri: str, tmp_path: Path) -> None:
    koch = saved_model(tmp_path / "koch", head="weighted_l1")
    with Gallery.create(pg_uri, koch):
        pass
    with pytest.raises(ConfigError, match="head is 'weighted_l1'.*search='memory'"):
        Gallery.open(pg_uri, search="database")
    model = saved_model(tmp_path / "model")
    empty = pg_uri.replace("?", "e?", 1)
    with Gallery.create(empty, model):
        pass
    with _open_db(empty, model) as db:
        for call in (lambda: db.search_embeddings(np.ones((1, db.dim), np.float32)), lambda: db.identify_embeddings(np.ones(db.dim, np.float32))):
            with pytest.raises(TwinshotError, match="the gallery is empty"):
                call()
    with Gallery.create(tmp_path / "g.db", model):
        pass
    with pytest.raises(ConfigError, match="SQLite gallery is searched in memory"):
        Gallery.open(tmp_path / "g.db", search="database")
    with pytest.raises(ConfigError, match="unknown search 'disk'; valid: auto, memory, database"):
        Gallery.open(tmp_path / "g.db", search="disk")


def test_auto_leaves_big_galleries_in_the_database(pg_uri: str, tmp_path: Path) -> None:
    """search='auto' (the default) searches in the database only where that works and the
    vectors would exceed the memory budget."""
    from twinshot.gallery.index import Scorer
    from twinshot.gallery.inference import load_embedder
    from twinshot.gallery.search_db import choose_search

    model = saved_model(tmp_path / "model")
    koch = saved_model(tmp_path / "koch", head="weighted_l1")
    with Gallery.create(pg_uri, model) as g:
        g.enroll_many(_entries(g.dim)[:5])
    with Gallery.open(pg_uri) as small:
        assert small.search_kind == "memory" and small.info()["search"] == "memory"
    store = open_store(pg_uri)
    try:
        scorer = Scorer(load_embedder(model)[0].head)
        assert choose_search("auto", store, scorer, budget=10) == "database"  # 5+ rows x D x 4 bytes > 10
        assert choose_search("auto", store, scorer, budget=10**9) == "memory"
        assert choose_search("memory", store, scorer, budget=10) == "memory"  # asked for: kept
        assert choose_search("auto", store, Scorer(load_embedder(koch)[0].head), budget=10) == "memory"  # no database distance
    finally:
        store.close()
    with Gallery.create(tmp_path / "g.db", model) as lite:
        assert choose_search("auto", lite._store, scorer, budget=0) == "memory"  # SQLite: no vector index


def test_cli_and_http_identify_search_in_the_database(pg_uri: str, tmp_path: Path, capsys) -> None:
    from tests.service.conftest import glyph, new_keys, png
    from tests.service.procs import serve

    model = saved_model(tmp_path / "model")
    with Gallery.create(pg_uri, model) as g:
        for i, name in enumerate(["alpha", "beta", "gamma"]):
            g.enroll(name, [glyph(i), glyph(i, jitter=2)])
    query = tmp_path / "q.png"
    query.write_bytes(png(glyph(1, jitter=1)))
    assert cli(["gallery", "identify", pg_uri, str(query), "--k", "2", "--search", "database", "--json"]) == 0
    (hit,) = json.loads(capsys.readouterr().out)
    assert cli(["gallery", "identify", pg_uri, str(query), "--k", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [hit] and hit["candidates"][0]["identity"] == "beta"
    koch = tmp_path / "koch.db"
    with Gallery.create(koch, saved_model(tmp_path / "koch", head="weighted_l1")):
        pass
    assert cli(["gallery", "search", str(koch), str(query), "--search", "database"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and err.count("\n") == 0 and "searched in memory" in err

    keys, admin, _ = new_keys(tmp_path / "keys.json")
    server = serve(pg_uri, keys, admin, "--audit-log", str(tmp_path / "audit.log"), "--search", "database")  # type: ignore[arg-type]
    try:
        c = server.client
        r = c.post("/v1/identify", files={"image": ("q.png", query.read_bytes(), "image/png")}, params={"k": 2})
        assert r.status_code == 200, r.text
        got = r.json()
        assert [x["identity"] for x in got["candidates"]] == [x["identity"] for x in hit["candidates"]]
        assert got["candidates"][0]["score"] == pytest.approx(hit["candidates"][0]["score"], abs=1e-4)
        r = c.post("/v1/identities/delta/images", files={"images": ("d.png", png(glyph(3)))})
        assert r.status_code == 200, r.text
        r = c.post("/v1/identify", files={"image": ("q.png", png(glyph(3, jitter=1)), "image/png")})
        assert r.status_code == 200 and r.json()["candidates"][0]["identity"] == "delta"
    finally:
        server.stop()


def test_exact_ties_beyond_the_first_fetch_are_settled(pg_uri: str, tmp_path: Path) -> None:
    """50 identities share one vector: the first fetch (k + 32 rows) ends inside the tie, so
    the database is asked again for more, and the lowest image ids win, as in memory."""
    model = saved_model(tmp_path / "model")
    with Gallery.create(pg_uri, model) as g:
        same = np.zeros((1, g.dim), np.float32)
        same[0, 0] = 1.0  # every product exact: ties stay ties whatever the summation order
        g.enroll_many([(f"far{i}", v[None], None, None) for i, v in enumerate(clustered(20, g.dim, clusters=3, seed=2, centre_seed=7))])
        g.enroll_many([(f"same{i:02d}", same, None, None) for i in range(50)])
    with Gallery.open(pg_uri, model) as mem, _open_db(pg_uri, model) as db:
        asked: list[int] = []
        nearest = db._store.nearest_rows

        def counting(queries: np.ndarray, n: int, *args: Any, **kw: Any) -> Any:
            asked.append(n)
            return nearest(queries, n, *args, **kw)

        db._store.nearest_rows = counting  # type: ignore[method-assign]
        a, b = mem.search_embeddings(same, k=3), db.search_embeddings(same, k=3)
        assert asked == [35, 140] and b.identities == [["same00", "same01", "same02"]]
        np.testing.assert_array_equal(a.image_ids, b.image_ids)
        for rule in ("max", "mean"):
            x, y = mem.identify_embeddings(same, k=5, rule=rule)[0], db.identify_embeddings(same, k=5, rule=rule)[0]
            assert [c.identity for c in y.candidates] == [c.identity for c in x.candidates] == [f"same{i:02d}" for i in range(5)], (rule, x, y, asked)
