"""Bulk enrollment and embedding in worker processes (``twinshot.gallery.bulk``): the same
gallery as a single-process enrollment, resumable after a real SIGKILL of the whole run or
of one worker, and the ``embed`` output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import psutil
import pytest

import twinshot
from twinshot.errors import ConfigError, DataError, TwinshotError
from twinshot.gallery import Gallery
from twinshot.gallery.bulk import BulkConfig, embed_folder, enroll_folder_bulk, parse_shard

from tests.conftest import make_image_folder
from tests.gallery.helpers import random_images, saved_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return saved_model(tmp_path_factory.mktemp("bulk-model") / "m")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 groups x 4 classes x 3 images (16 identities, 48 images)."""
    return make_image_folder(tmp_path_factory.mktemp("bulk-images") / "f", groups=4, classes_per_group=4, per_class=3)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, folder: Path) -> dict[str, np.ndarray]:
    """The reference: the folder enrolled by one process in one transaction."""
    path = tmp_path_factory.mktemp("bulk-single") / "g.db"
    with Gallery.create(path, model_dir, inference="torch") as g:
        g.enroll_folder(folder)
        return _contents(g)


def _contents(g: Gallery) -> dict[str, np.ndarray]:
    """Each identity's references seen through the public search API: their scores against
    6 fixed probe embeddings, ``(references, 6)``, rows sorted (image ids differ between
    runs, so rows are compared as a set)."""
    probes = np.random.default_rng(7).standard_normal((6, g.dim)).astype(np.float32)
    result = g.search_embeddings(probes, k=g.n_embeddings)
    by_image: dict[int, tuple[str, list[float]]] = {}
    for i in range(len(probes)):
        for n in result.neighbours(i):
            by_image.setdefault(n.image_id, (n.identity, []))[1].append(n.score)
    out: dict[str, list[list[float]]] = {}
    for name, scores in by_image.values():
        out.setdefault(name, []).append(scores)
    return {name: np.array(sorted(rows)) for name, rows in out.items()}


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].shape == b[name].shape, name
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_bulk_equals_single_process_and_resumes_as_noop(tmp_path: Path, model_dir: Path, folder: Path, single: dict) -> None:
    seen: list[tuple[int, int]] = []
    with Gallery.create(tmp_path / "g.db", model_dir, inference="torch") as g:
        report = enroll_folder_bulk(g, folder, BulkConfig(workers=2, task_images=7), progress=lambda d, t: seen.append((d, t)))
        assert (report.enrolled, report.skipped, report.references, report.identities) == (16, 0, 48, 16)
        assert seen[0] == (0, 16) and seen[-1] == (16, 16) and len(seen) > 3  # several commits
        _assert_same(_contents(g), single)
        again = enroll_folder_bulk(g, folder, BulkConfig(workers=0))
        assert (again.enrolled, again.skipped) == (0, 16)
        assert g.n_embeddings == 48


def test_shards_partition_the_identities(tmp_path: Path, model_dir: Path, folder: Path, single: dict) -> None:
    with Gallery.create(tmp_path / "g.db", model_dir, inference="torch") as g:
        a = enroll_folder_bulk(g, folder, BulkConfig(workers=0, shard=(0, 2)))
        b = enroll_folder_bulk(g, folder, BulkConfig(workers=0, shard=(1, 2)))
        assert a.enrolled + b.enrolled == 16 and a.enrolled > 0 and b.enrolled > 0
        _assert_same(_contents(g), single)
    with pytest.raises(ConfigError, match="i/n"):
        parse_shard("2")
    with pytest.raises(ConfigError, match="shard"):
        parse_shard("2/2")


def test_refuses_an_identity_enrolled_with_other_references(tmp_path: Path, model_dir: Path, folder: Path) -> None:
    with Gallery.create(tmp_path / "g.db", model_dir, inference="torch") as g:
        g.enroll("alphabet1/character02", random_images(1))
        with pytest.raises(DataError, match="alphabet1/character02.*1 reference"):
            enroll_folder_bulk(g, folder, BulkConfig(workers=0))
        assert g.n_embeddings == 1  # refused before any work
    with pytest.raises(ConfigError):
        BulkConfig(workers=-1)


_SCRIPT = """
import sys
from twinshot.errors import TwinshotError
from twinshot.gallery import Gallery
from twinshot.gallery.bulk import BulkConfig, enroll_folder_bulk

def progress(done, total):
    print("done", done, flush=True)
    if done >= 4 and not getattr(progress, "paused", False):
        progress.paused = True
        print("paused", flush=True)
        sys.stdin.readline()  # the test kills the run (or a worker) here

if __name__ == "__main__":  # the workers are spawned: they import this file
    with Gallery.open(sys.argv[1], inference="torch") as g:
        try:
            enroll_folder_bulk(g, sys.argv[2], BulkConfig(workers=2, task_images=6), progress=progress)
        except TwinshotError as exc:
            print("error:", exc, flush=True)
            sys.exit(2)
    print("finished", flush=True)
"""


def _start(tmp_path: Path, gallery: Path, folder: Path) -> tuple[subprocess.Popen, list[str]]:
    """Run the bulk enrollment in a child process until it pauses after a commit; returns
    the process and the lines it printed (the last ``done`` is what it reported done)."""
    script = tmp_path / "bulk_run.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    env = {**os.environ, "PYTHONPATH": str(Path(twinshot.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(gallery), str(folder)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )
    lines = []
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line.strip())
        if line.startswith("paused"):
            return proc, lines
    raise AssertionError(f"the run ended before pausing: {lines}")


def _reported_done(lines: list[str]) -> int:
    return max(int(x.split()[1]) for x in lines if x.startswith("done"))


@pytest.mark.slow
def test_sigkill_of_the_run_loses_nothing_reported_done(tmp_path: Path, model_dir: Path, folder: Path, single: dict) -> None:
    gallery = tmp_path / "g.db"
    Gallery.create(gallery, model_dir, inference="torch").close()
    proc, lines = _start(tmp_path, gallery, folder)
    os.killpg(proc.pid, signal.SIGKILL)  # the parent and its workers, as a crash would
    proc.wait(timeout=60)
    reported = _reported_done(lines)
    with Gallery.open(gallery, inference="torch") as g:
        got = _contents(g)
        assert len(got) >= reported  # every identity reported done is there, with all its references
        for name, rows in got.items():
            assert rows.shape == single[name].shape
        report = enroll_folder_bulk(g, folder, BulkConfig(workers=0))
        assert report.skipped == len(got) and report.enrolled == 16 - len(got)
        _assert_same(_contents(g), single)


@pytest.mark.slow
def test_sigkill_of_a_worker_is_a_clear_error_then_resumes(tmp_path: Path, model_dir: Path, folder: Path, single: dict) -> None:
    gallery = tmp_path / "g.db"
    Gallery.create(gallery, model_dir, inference="torch").close()
    proc, lines = _start(tmp_path, gallery, folder)
    workers = [p for p in psutil.Process(proc.pid).children() if "resource_tracker" not in " ".join(p.cmdline())]
    assert workers
    os.kill(workers[0].pid, signal.SIGKILL)
    out, _ = proc.communicate("go\n", timeout=120)
    lines += out.splitlines()
    if proc.returncode == 0:  # the killed worker had nothing left to do: the run finished
        assert lines[-1] == "finished"
    else:
        assert proc.returncode == 2 and "worker process died" in lines[-1] and "run the same command again" in lines[-1]
    reported = _reported_done(lines)
    with Gallery.open(gallery, inference="torch") as g:
        assert len(g.identity_names()) >= reported
        enroll_folder_bulk(g, folder, BulkConfig(workers=0))
        _assert_same(_contents(g), single)


def test_embed_folder_npz_and_npy(tmp_path: Path, model_dir: Path, folder: Path) -> None:
    out = tmp_path / "e.npz"
    result = embed_folder(model_dir, folder, out, BulkConfig(workers=2, task_images=10))
    assert result["n_images"] == 48 and result["dim"] == 16
    data = np.load(out)
    with Gallery.create(tmp_path / "g.db", model_dir, inference="torch") as g:
        expected = g.embed([str(folder / p) for p in data["paths"]])
        assert str(data["fingerprint"]) == g.fingerprint
    np.testing.assert_allclose(data["embeddings"], expected, rtol=1e-5, atol=1e-5)
    assert data["labels"].shape == (48,) and list(data["class_names"])[0] == "alphabet0/character01"
    embed_folder(model_dir, folder, tmp_path / "e.npy", BulkConfig(workers=0))
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), data["embeddings"], rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match=".npz or .npy"):
        embed_folder(model_dir, folder, tmp_path / "e.txt")
    with pytest.raises(DataError, match="no such folder"):
        embed_folder(model_dir, folder, tmp_path / "missing" / "e.npz")
    assert sorted(p.name for p in tmp_path.iterdir() if "e.np" in p.name) == ["e.npy", "e.npz"]  # no temporary left
