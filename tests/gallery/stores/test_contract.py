"""One contract for every store (SQLite, PostgreSQL + pgvector, Milvus Lite): the same
enroll / identify / verify / search / remove / calibrate calls give the same results as the
SQLite gallery on the same data, with the same search contract (scores, -1 ids), the same
model-fingerprint check, and another process's view of the changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twinshot.errors import TwinshotError
from twinshot.gallery import Gallery

from tests.gallery.helpers import clustered, random_images, saved_model


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return saved_model(tmp_path / "model", dim=16)


def _data(dim: int) -> tuple[list[tuple[str, np.ndarray, dict | None, None]], np.ndarray]:
    vecs = clustered(60, dim, clusters=6, seed=1)
    entries = [(f"person {i:02d}", vecs[3 * i : 3 * i + 3 - (i % 2)], {"n": i} if i % 3 == 0 else None, None) for i in range(20)]
    return entries, clustered(12, dim, clusters=6, seed=2)


def test_same_results_as_sqlite(store_uri: str, model_dir: Path, tmp_path: Path) -> None:
    with Gallery.create(tmp_path / "ref.db", model_dir) as ref, Gallery.create(store_uri, model_dir) as g:
        entries, q = _data(g.dim)
        for gal in (ref, g):
            gal.enroll_many(entries)
            gal.enroll_embeddings("person 03", clustered(2, g.dim, clusters=6, seed=5), replace=True)
            gal.enroll_embeddings("person 04", clustered(1, g.dim, clusters=6, seed=6), add=True)
            assert gal.remove("person 07") == 2
        assert g.identity_names() == ref.identity_names() and g.n_embeddings == ref.n_embeddings == 49
        assert [(r.name, r.references, r.metadata) for r in g.identities()] == [(r.name, r.references, r.metadata) for r in ref.identities()]
        for rule in ("max", "mean"):
            a, b = ref.identify_embeddings(q, k=4, rule=rule), g.identify_embeddings(q, k=4, rule=rule)
            for x, y in zip(a, b):
                assert [c.identity for c in x.candidates] == [c.identity for c in y.candidates]
                np.testing.assert_allclose([c.score for c in x.candidates], [c.score for c in y.candidates], rtol=1e-5, atol=1e-5)
                assert x.identity == y.identity
        sa, sb = ref.search_embeddings(q, k=100), g.search_embeddings(q, k=100)
        assert sb.scores.shape == (12, 49)  # k clamped to what is enrolled
        np.testing.assert_allclose(sa.scores, sb.scores, rtol=1e-5, atol=1e-5)
        assert sa.identities == sb.identities
        # image ids are the store's own, but they name the same references in the same order
        assert np.all(sb.image_ids >= 0) and len(set(sb.image_ids[0].tolist())) == 49
        # calibrate: the same stored threshold on every store
        scores = np.array([-2.0, -1.0, 0.5, 1.0, 2.0, 3.0, -3.0, 0.0])
        same = np.array([0, 0, 1, 1, 1, 1, 0, 0], bool)
        ra = ref.calibrate_scores(scores, same, eer=True, n_boot=10)
        rb = g.calibrate_scores(scores, same, eer=True, n_boot=10)
        assert ra.threshold == rb.threshold == g.threshold
        assert [e["action"] for e in g.audit()] == [e["action"] for e in ref.audit()]
        assert g.audit()[-1]["action"] == "calibrate"


def test_images_verify_fingerprint_and_reopen(store_uri: str, model_dir: Path, tmp_path: Path) -> None:
    imgs = random_images(4)
    with Gallery.create(store_uri, model_dir) as g:
        g.enroll("alice", imgs[:2], {"badge": 7})
        g.enroll("bob", imgs[2])
        (res,) = g.identify(imgs[1], k=5)
        assert res.identity == "alice" and [c.identity for c in res.candidates] == ["alice", "bob"]
        v = g.verify(imgs[0], imgs[0])
        assert v.same and v.score == pytest.approx(g.identify(imgs[0])[0].score, abs=1e-4)
        with pytest.raises(TwinshotError, match="already enrolled"):
            g.enroll("alice", imgs[3])
        with Gallery.open(store_uri) as other:  # another connection sees the change and the settings
            assert other.identity_names() == ["alice", "bob"] and other.identities()[0].metadata == {"badge": 7}
            g.enroll("carol", imgs[3])
            assert other.identify(imgs[3])[0].identity == "carol"  # noticed through the generation
        with pytest.raises(TwinshotError, match="not enrolled"):
            g.remove("dave")
    other_model = saved_model(tmp_path / "other", seed=1)
    with pytest.raises(TwinshotError, match="model mismatch"):
        Gallery.open(store_uri, other_model)
    with pytest.raises(TwinshotError, match="already exists"):
        Gallery.create(store_uri, model_dir)
    with Gallery.create(store_uri, model_dir, overwrite=True) as g:
        assert g.n_embeddings == 0
        with pytest.raises(TwinshotError, match="empty"):
            g.identify(imgs[0])


def test_read_only(store_uri: str, model_dir: Path) -> None:
    from twinshot.gallery.stores import Store

    with Gallery.create(store_uri, model_dir) as g:
        assert isinstance(g._store, Store)  # every store implements the one interface
        g.enroll_embeddings("a", np.ones((1, g.dim), np.float32))
    with Gallery.open(store_uri, readonly=True) as g:
        assert g.read_only and g.identify_embeddings(np.ones((1, g.dim), np.float32))[0].identity == "a"
        with pytest.raises(TwinshotError, match="read-only"):
            g.enroll_embeddings("b", np.ones((1, g.dim), np.float32))
