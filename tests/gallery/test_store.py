"""The SQLite store: block packing, ordering, consistency checks, and crashes (SIGKILL)
in the middle of an enrollment leaving the gallery as it was."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from twinshot.errors import TwinshotError
from twinshot.gallery import Gallery
from twinshot.gallery.store import GalleryStore

from tests.gallery.helpers import saved_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return saved_model(tmp_path / "model")


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)


def test_blocks_pack_rows_and_keep_image_id_order(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Gallery.create(tmp_path / "g.db", model_dir) as g:
        g._store.rows_per_block = 7  # small blocks: many fills, rewrites and deletions
        v = _vectors(100)
        for i in range(30):  # single enrollments fill up the last block
            g.enroll_embeddings(f"p{i}", v[i])
        g.enroll_many([(f"q{i}", v[30 + 5 * i : 35 + 5 * i], None, None) for i in range(10)])
        assert g._store.conn.execute("SELECT COUNT(*) FROM blocks").fetchone()[0] == -(-80 // 7)
        for name in ["p3", "q0", "q5", "p29"]:
            g.remove(name)
        g.enroll_embeddings("late", v[80:90])
        g.enroll_embeddings("p0", v[90:92], replace=True)
        rows = g._store.load_rows()
        assert np.all(np.diff(rows.ids) > 0)
        assert g.check()["embeddings"] == 80 - 1 - 5 - 5 - 1 + 10 - 1 + 2
        names = {r.name: r for r in g.identities()}
        assert names["late"].references == 10 and names["p0"].references == 2 and "q5" not in names
        # the in-memory matrix equals the file's, row for row
        fresh = Gallery.open(g.path)
        np.testing.assert_array_equal(fresh._ids, g._ids)
        np.testing.assert_array_equal(fresh._matrix.data, g._matrix.data)
        fresh.close()


def test_check_detects_disagreeing_tables(tmp_path: Path, model_dir: Path) -> None:
    with Gallery.create(tmp_path / "g.db", model_dir) as g:
        g.enroll_embeddings("a", _vectors(3))
        g._store.conn.execute("DELETE FROM embeddings WHERE id = 2")
        with pytest.raises(TwinshotError, match="disagree"):
            g._store.check()


def test_newer_schema_is_refused(tmp_path: Path, model_dir: Path) -> None:
    Gallery.create(tmp_path / "g.db", model_dir).close()
    store = GalleryStore.open(tmp_path / "g.db")
    store.set_meta({"schema_version": "99"})
    store.close()
    with pytest.raises(TwinshotError, match="schema version 99 is newer"):
        Gallery.open(tmp_path / "g.db")


_KILL_MID_WRITE = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from twinshot.gallery import Gallery

    g = Gallery.open(sys.argv[1])
    vecs = np.random.default_rng(1).standard_normal((60000, 16)).astype(np.float32)

    def progress(stage, done, total):
        if stage == "store":  # blocks written, embeddings rows half written: wait to be killed
            print("MID", done, total, flush=True)
            time.sleep(120)

    g.enroll_many([(f"bulk{i}", vecs[10 * i : 10 * i + 10], None, None) for i in range(6000)], progress=progress)
    print("DONE", flush=True)
    """
)


def _spawn(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_sigkill_in_the_middle_of_an_enrollment_leaves_the_gallery_intact(tmp_path: Path, model_dir: Path) -> None:
    path = tmp_path / "g.db"
    with Gallery.create(path, model_dir) as g:
        g.enroll_embeddings("alice", _vectors(2))
        before = g._store.load_rows()
    proc = _spawn(_KILL_MID_WRITE, str(path))
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("MID"), (line, proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
        wal = Path(str(path) + "-wal")
        assert wal.stat().st_size > 1_000_000  # the half-done transaction really reached the disk
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    with Gallery.open(path) as g:
        counts = g.check()
        assert counts == {"identities": 1, "embeddings": 2, "images": 0}
        assert g.identity_names() == ["alice"]
        after = g._store.load_rows()
        np.testing.assert_array_equal(after.vectors, before.vectors)
        np.testing.assert_array_equal(after.ids, before.ids)
        # and it keeps working: the next enrollment succeeds
        g.enroll_embeddings("bob", _vectors(1, seed=3))
        assert g.check()["identities"] == 2


_ENROLL_FOREVER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from twinshot.gallery import Gallery

    g = Gallery.open(sys.argv[1])
    rng = np.random.default_rng(2)
    print("READY", flush=True)
    i = 0
    while True:
        g.enroll_many([(f"batch{i}-{j}", rng.standard_normal((10, 16)).astype(np.float32), None, None) for j in range(300)])
        if i % 3 == 2:
            g.remove(f"batch{i - 1}-0")
        if i == 1:
            print("COMMITTED", flush=True)  # two enrollments are in the file
        i += 1
    """
)


def test_sigkill_at_a_random_moment_leaves_only_whole_enrollments(tmp_path: Path, model_dir: Path) -> None:
    path = tmp_path / "g.db"
    Gallery.create(path, model_dir).close()
    proc = _spawn(_ENROLL_FOREVER, str(path))
    try:
        assert proc.stdout.readline().startswith("READY")  # type: ignore[union-attr]
        assert proc.stdout.readline().startswith("COMMITTED")  # type: ignore[union-attr]
        time.sleep(random.Random(0).uniform(0, 0.5))  # anywhere in the following writes
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with Gallery.open(path) as g:
        g.check()
        records = g.identities()
        assert len(records) >= 600, "a committed enrollment was lost"
        assert all(r.references == 10 for r in records)  # no half-enrolled identity
        batches: dict[str, int] = {}
        for r in records:
            b = r.name.split("-")[0]
            batches[b] = batches.get(b, 0) + 1
        assert all(n in (299, 300) for n in batches.values())  # whole batches (less one removal)


def test_cached_index_is_stored_in_chunks(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from twinshot.gallery import store as store_mod

    monkeypatch.setattr(store_mod, "ANN_CHUNK_BYTES", 1000)
    with Gallery.create(tmp_path / "g.db", model_dir) as g:
        data = bytes(range(256)) * 20  # 5120 bytes -> 6 chunks
        g._store.write_ann("hnsw", np.arange(3), data)
        generation, ids, back = g._store.read_ann("hnsw")
        assert back == data and ids.tolist() == [0, 1, 2] and generation == g._store.generation()
        assert g._store.conn.execute("SELECT COUNT(*) FROM ann_chunks").fetchone()[0] == 6
        g._store.write_ann("hnsw", np.arange(2), b"short")  # replaced, not appended
        assert g._store.read_ann("hnsw")[2] == b"short"
        g._store.conn.execute("DELETE FROM ann_chunks WHERE seq = 0")
        assert g._store.read_ann("hnsw") is None  # incomplete -> rebuilt on next use
