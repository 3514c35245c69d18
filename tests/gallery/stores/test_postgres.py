"""The PostgreSQL + pgvector store against a real server (pgserver): transactions, the
database's exact search and its HNSW index (recall measured against exact), the
prepared-statement pitfall, and a server that cannot be reached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twinshot.errors import StorageError, TwinshotError
from twinshot.gallery import Gallery
from twinshot.gallery.index import approximate_recall
from twinshot.gallery.stores import open_store, parse, redact

from tests.gallery.helpers import clustered, saved_model


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return saved_model(tmp_path / "model", dim=16)


def _fill(g: Gallery, n_ident: int, per: int, seed: int = 0) -> np.ndarray:
    vecs = clustered(n_ident * per, g.dim, clusters=max(2, n_ident // 4), seed=seed)
    g.enroll_many([(f"id{i:04d}", vecs[i * per : (i + 1) * per], None, None) for i in range(n_ident)])
    return vecs


def test_a_failed_enrollment_leaves_nothing(pg_uri: str, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from twinshot.gallery.stores.postgres import PostgresStore

    with Gallery.create(pg_uri, model_dir) as g:
        _fill(g, 3, 2)
        gen = g._store.generation()
        real = PostgresStore._copy_rows

        def half_then_fail(self, conn, ids, identity_ids, vectors, created, progress):  # type: ignore[no-untyped-def]
            real(self, conn, ids[:1], identity_ids[:1], vectors[:1], created, progress)
            raise OSError("connection lost in the middle of the copy")

        monkeypatch.setattr(PostgresStore, "_copy_rows", half_then_fail)
        with pytest.raises(OSError):
            g.enroll_embeddings("carol", np.ones((3, g.dim), np.float32))
        monkeypatch.undo()
        assert g._store.generation() == gen and g.identity_names() == ["id0000", "id0001", "id0002"]
    with Gallery.open(pg_uri) as g2:  # a fresh reader sees the same
        assert g2.n_embeddings == 6 and "carol" not in g2.identity_names()


def test_database_exact_search_matches_twinshot_and_hnsw_recall(pg_uri: str, model_dir: Path) -> None:
    with Gallery.create(pg_uri, model_dir) as g:
        _fill(g, 300, 2)
        store = g._store
        q = clustered(40, g.dim, clusters=75, seed=9)
        exact = g.search_embeddings(q, k=10)
        db_exact = store.nearest(q, 10, "cosine", exact=True)
        # the database's exact search finds the same rows (ties aside: compare sets per row)
        same = np.mean([set(a) == set(b) for a, b in zip(exact.image_ids, db_exact)])
        assert same >= 0.95
        store.ensure_hnsw("cosine", m=16, ef_construction=64)
        for _ in range(7):  # beyond psycopg's prepare threshold: settings must still apply
            hnsw = store.nearest(q, 10, "cosine", exact=False, ef_search=40)
        again = store.nearest(q, 10, "cosine", exact=True)
        assert np.array_equal(again, db_exact)
        recall = approximate_recall(exact.image_ids, hnsw)
        assert recall >= 0.9, recall


def test_gallery_hnsw_index_uses_pgvector(pg_uri: str, model_dir: Path) -> None:
    with Gallery.create(pg_uri, model_dir) as g:
        _fill(g, 100, 2)
    with Gallery.open(pg_uri, index="exact") as ge, Gallery.open(pg_uri, index="hnsw") as gh:
        built = gh.build_index()
        assert built["kind"] == "pgvector-hnsw" and built["rows"] == 200
        q = clustered(20, ge.dim, clusters=25, seed=3)
        e, h = ge.identify_embeddings(q, k=3), gh.identify_embeddings(q, k=3)
        agree = np.mean([a.candidates[0].identity == b.candidates[0].identity for a, b in zip(e, h)])
        assert agree >= 0.9
        for a, b in zip(e, h):  # scores are exact whenever the same identity is found
            if a.candidates[0].identity == b.candidates[0].identity:
                assert a.score == pytest.approx(b.score, abs=1e-5)


def test_unreachable_server_is_one_clear_line(tmp_path: Path) -> None:
    uri = f"postgresql://alice:s3cret@/postgres/faces?host={tmp_path}/nowhere&connect_timeout=1"
    with pytest.raises(StorageError) as info:
        open_store(uri)
    msg = str(info.value)
    assert "\n" not in msg and "s3cret" not in msg and "alice:***@" in msg and "cannot reach the database" in msg


def test_uri_parsing_and_redaction() -> None:
    w = parse("postgresql://u:pw@db.example:5433/prod/faces?sslmode=require")
    assert (w.kind, w.name, w.target) == ("postgresql", "faces", "postgresql://u:pw@db.example:5433/prod?sslmode=require")
    assert redact("postgresql://u:pw@h/db/t") == "postgresql://u:***@h/db/t"
    m = parse("milvus://root:Milvus@m.example:19530/faces?consistency=Strong")
    assert (m.target, m.name, m.options["token"], m.options["consistency"]) == ("http://m.example:19530", "faces", "root:Milvus", "Strong")
    assert "Milvus" not in str(m) and parse("milvus-lite:///tmp/a.db/faces").target == "/tmp/a.db"
    with pytest.raises(TwinshotError, match="letters, digits"):
        parse("postgresql://h/db/bad-name")


def test_kept_images_and_reembed(pg_uri: str, model_dir: Path, tmp_path: Path) -> None:
    from twinshot.gallery import reembed

    from tests.gallery.helpers import random_images

    imgs = random_images(3)
    with Gallery.create(pg_uri, model_dir, keep_images=True) as g:
        g.enroll("alice", imgs[:2])
        g.enroll("bob", imgs[2])
        g.remove("bob")  # its kept image goes with it
        assert g._store.count_images() == 2
    new_model = saved_model(tmp_path / "new", dim=8, seed=3)
    g2, summary = reembed(pg_uri, new_model)
    with g2:
        assert summary["n_embeddings"] == 2 and g2.dim == 8
        assert g2.identify(imgs[0])[0].candidates[0].identity == "alice"
    with Gallery.open(pg_uri) as g3:  # the new model is the gallery's now
        assert g3.dim == 8 and g3.fingerprint == g2.fingerprint
        g3._store.scrub()
