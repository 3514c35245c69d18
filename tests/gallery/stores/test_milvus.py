"""The Milvus store's client contract against Milvus Lite: an identity's references are
invisible until its identity row lands (a write that dies half-way leaves nothing
visible), a reopened collection is loaded, one process per Lite file, and Milvus's own
index as a candidate generator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twinshot.errors import ConfigError, StorageError
from twinshot.gallery import Gallery
from twinshot.gallery.index import approximate_recall

from tests.gallery.helpers import clustered, saved_model


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return saved_model(tmp_path / "model", dim=16)


def test_a_write_that_dies_before_its_identity_row_is_invisible(milvus_uri: str, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Gallery.create(milvus_uri, model_dir) as g:
        g.enroll_embeddings("a", clustered(2, g.dim, 3, seed=1))
        client = g._store.client
        real = client.upsert

        def die_on_identities(collection, rows, **kw):  # type: ignore[no-untyped-def]
            if collection.endswith("_identities"):
                raise KeyboardInterrupt  # killed between the rows and the identity row
            return real(collection, rows, **kw)

        monkeypatch.setattr(client, "upsert", die_on_identities)
        with pytest.raises(KeyboardInterrupt):
            g.enroll_embeddings("a", clustered(3, g.dim, 3, seed=2), replace=True)
        with pytest.raises(KeyboardInterrupt):
            g.enroll_embeddings("b", clustered(3, g.dim, 3, seed=3))
        monkeypatch.undo()
        store = g._store
        assert store.load_rows().ids.size == 2 and [r.name for r in store.list_identities()] == ["a"]
        assert store.check()["invisible_rows"] == 6  # the dead writes' rows, never visible
        g.enroll_embeddings("b", clustered(1, g.dim, 3, seed=4))
        assert g.identity_names() == ["a", "b"] and g.n_embeddings == 3


def test_reopen_loads_and_second_process_is_refused(milvus_uri: str, model_dir: Path) -> None:
    with Gallery.create(milvus_uri, model_dir) as g:
        g.enroll_embeddings("a", np.ones((2, g.dim), np.float32))
        code = f"from twinshot.gallery.stores import open_store\nopen_store({milvus_uri!r})"
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert other.returncode != 0 and "only one process may open a Lite file" in other.stderr
    with Gallery.open(milvus_uri) as g:  # reopened: its collections are loaded again
        assert g.n_embeddings == 2 and g.identify_embeddings(np.ones((1, g.dim), np.float32))[0].identity == "a"


def test_milvus_index_candidates_and_no_kept_images(milvus_uri: str, model_dir: Path) -> None:
    with pytest.raises(ConfigError, match="cannot keep images"):
        Gallery.create(milvus_uri, model_dir, keep_images=True)
    with Gallery.create(milvus_uri, model_dir) as g:
        vecs = clustered(400, g.dim, clusters=40, seed=0)
        g.enroll_many([(f"id{i:03d}", vecs[2 * i : 2 * i + 2], None, None) for i in range(200)])
    with Gallery.open(milvus_uri, index="exact") as ge, Gallery.open(milvus_uri, index="hnsw") as gh:
        q = clustered(30, ge.dim, clusters=40, seed=7)
        exact = ge.search_embeddings(q, k=10)
        approx = gh.search_embeddings(q, k=10)
        assert approximate_recall(exact.image_ids, approx.image_ids) >= 0.9
        np.testing.assert_allclose(exact.scores[:, 0], approx.scores[:, 0], atol=1e-5)


def test_unreachable_milvus_server_is_one_line() -> None:
    from twinshot.gallery.stores import open_store

    with pytest.raises(StorageError) as info:  # retried with backoff, then one line
        open_store("milvus://root:pw@127.0.0.1:1/faces")
    msg = str(info.value)
    assert "\n" not in msg and ":pw@" not in msg and "milvus://root:***@127.0.0.1:1/faces" in msg and "cannot reach" in msg
