"""Issue 11: a gallery never crashes on bad input or a damaged file, never writes when it
only reads, and audits every change in the change's own transaction."""

from __future__ import annotations

import json
import math
import sqlite3
import unicodedata
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from twinshot.errors import ConfigError, DataError, ReadOnlyError, TwinshotError
from twinshot.gallery import Actor, Gallery, check_gallery, describe, remove_identity
from twinshot.gallery.audit import read_audit
from twinshot.gallery.names import MAX_IDENTITY_CHARS, MAX_METADATA_DEPTH, InvalidIdentityName, InvalidMetadata

from tests.gallery.helpers import random_images, saved_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return saved_model(tmp_path_factory.mktemp("model") / "m")


@pytest.fixture
def filled(tmp_path: Path, model_dir: Path) -> Path:
    """A gallery with alice (2 references) and bob (1), closed."""
    path = tmp_path / "g.db"
    imgs = random_images(3)
    with Gallery.create(path, model_dir) as g:
        g.enroll("alice", imgs[:2], {"badge": 1})
        g.enroll("bob", imgs[2])
    return path


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# -- reading never writes ------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"hello, not a database at all" * 10])
def test_reading_a_non_gallery_changes_nothing(tmp_path: Path, model_dir: Path, content: bytes) -> None:
    path = tmp_path / "thing.db"
    path.write_bytes(content)
    for read in (describe, check_gallery, lambda p: Gallery.open(p, model_dir)):
        with pytest.raises(TwinshotError, match="not a twinshot gallery"):
            read(path)
    assert path.read_bytes() == content  # a zero-byte file did not become an SQLite file
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()


def test_readers_open_read_only(filled: Path, model_dir: Path) -> None:
    before = filled.read_bytes()
    info = describe(filled)
    assert info["n_identities"] == 2
    with Gallery.open(filled, readonly=True) as g:
        assert g.read_only and g.identify(random_images(1)[0])[0].candidates
        for change in (
            lambda: g.enroll("carol", random_images(1)[0]),
            lambda: g.remove("alice"),
            lambda: g.set_threshold(1.0),
        ):
            with pytest.raises(ReadOnlyError, match="read-only"):
                change()
    assert filled.read_bytes() == before
    assert describe(filled)["n_identities"] == 2


# -- numbers -------------------------------------------------------------------------------


def test_k_and_thresholds_are_checked(tmp_path: Path, model_dir: Path, filled: Path) -> None:
    with Gallery.open(filled) as g:
        q = random_images(1)[0]
        for k in (0, -1, 1.5, True, "3"):
            with pytest.raises(ConfigError, match="k must be"):
                g.search(q, k=k)  # type: ignore[arg-type]
            with pytest.raises(ConfigError, match="k must be"):
                g.identify(q, k=k)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="finite"):
            g.set_threshold(math.nan)
        with pytest.raises(ConfigError, match="finite"):
            g.identify(q, threshold=math.nan)
        assert g.identify(q, threshold=-math.inf)[0].identity is not None  # one call may accept all
        with pytest.raises(ConfigError, match="n_pairs"):
            g.calibrate(folder=tmp_path, eer=True, n_pairs=0)
    for bad in (math.nan, math.inf):
        with pytest.raises(ConfigError, match="finite"):
            Gallery.create(tmp_path / "nan.db", model_dir, threshold=bad)
    assert not (tmp_path / "nan.db").exists()


# -- names and metadata --------------------------------------------------------------------


def test_one_name_rule_nfc_control_characters_length(gallery_path: Callable[[], Path]) -> None:
    with Gallery.open(gallery_path()) as g:
        img = random_images(1)[0]
        nfc, nfd = unicodedata.normalize("NFC", "José"), unicodedata.normalize("NFD", "José")
        assert nfc != nfd
        g.enroll(nfc, img)
        with pytest.raises(TwinshotError, match="already enrolled"):
            g.enroll(nfd, img)  # the same name, typed differently
        assert g.identity_names() == [nfc]
        for bad in ("a\nb", "esc\x1b[31m", "tab\there", "line\u2028sep", "", "   ", "x" * (MAX_IDENTITY_CHARS + 1), "y" * 100_000):
            with pytest.raises(InvalidIdentityName):
                g.enroll(bad, img)
        g.enroll("z" * MAX_IDENTITY_CHARS, img)
        assert g.remove(nfd) == 1  # found under its normal form
        assert len(g) == 1


def test_metadata_depth_is_limited_and_a_bad_record_never_breaks_a_listing(filled: Path) -> None:
    with Gallery.open(filled) as g:
        img = random_images(1)[0]
        with pytest.raises(InvalidMetadata, match="nested"):
            g.enroll("deep", img, nested(MAX_METADATA_DEPTH + 1))
        with pytest.raises(InvalidMetadata, match="nested"):
            g.enroll("deeper", img, nested(5000))
        g.enroll("ok-depth", img, nested(MAX_METADATA_DEPTH))
    with sqlite3.connect(filled) as db:  # records damaged behind the gallery's back
        db.execute("UPDATE identities SET metadata = ? WHERE name = 'alice'", ("[" * 100_000,))
        db.execute("UPDATE identities SET metadata = ? WHERE name = 'bob'", (json.dumps(nested(300)),))
    info = describe(filled)
    by_name = {r["name"]: r for r in info["identities"]}
    assert by_name["alice"]["metadata"] == {} and "metadata_error" in by_name["alice"]
    assert by_name["bob"]["metadata"] == {} and "deeper" in by_name["bob"]["metadata_error"]
    assert "metadata_error" not in by_name["ok-depth"]
    report = check_gallery(filled)
    assert not report.ok and any("alice" in p for p in report.problems) and any("bob" in p for p in report.problems)


# -- damaged files -------------------------------------------------------------------------

DAMAGE = {
    "truncated vectors": "UPDATE blocks SET vectors = substr(vectors, 1, 10)",
    "negative block size": "UPDATE blocks SET n = -3",
    "text instead of a blob": "UPDATE blocks SET ids = 'oops'",
    "non-numeric threshold": "UPDATE meta SET value = 'high' WHERE key = 'threshold'",
    "NaN threshold": "UPDATE meta SET value = 'nan' WHERE key = 'threshold'",
    "bad calibration JSON": "UPDATE meta SET value = '{oops' WHERE key = 'calibration'",
    "bad calibration report": "UPDATE meta SET value = '[1, 2' WHERE key = 'calibration_report'",
    "missing rule": "DELETE FROM meta WHERE key = 'rule'",
    "missing fingerprint": "UPDATE meta SET value = '' WHERE key = 'fingerprint'",
    "orphaned embedding": "PRAGMA foreign_keys=OFF; DELETE FROM identities WHERE name = 'bob'",
    "non-numeric generation": "UPDATE meta SET value = 'x' WHERE key = 'generation'",
    "bad dimension": "UPDATE meta SET value = 'wide' WHERE key = 'dim'",
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_contents_give_one_clear_error(filled: Path, model_dir: Path, kind: str) -> None:
    with sqlite3.connect(filled) as db:
        db.executescript(DAMAGE[kind])
    assert not check_gallery(filled).ok
    for use in (
        lambda: describe(filled),
        lambda: Gallery.open(filled, model_dir).identify(random_images(1)[0]),
        lambda: Gallery.open(filled, model_dir).search(random_images(1)[0]),
        lambda: remove_identity(filled, "alice"),
    ):
        try:
            use()
        except TwinshotError as exc:
            assert "\n" not in str(exc)
        # anything else (KeyError, ValueError, RecursionError...) fails the test


def test_check_passes_a_healthy_gallery_read_only(filled: Path) -> None:
    before = filled.read_bytes()
    report = check_gallery(filled)
    assert report.ok, report.problems
    assert (report.identities, report.embeddings, report.audit_records) == (2, 3, 2)
    assert report.to_dict()["ok"] is True
    assert filled.read_bytes() == before


def test_check_finds_nan_vectors_and_orphaned_images(tmp_path: Path, model_dir: Path) -> None:
    path = tmp_path / "k.db"
    with Gallery.create(path, model_dir, keep_images=True) as g:
        g.enroll("alice", random_images(1)[0])
    with sqlite3.connect(path) as db:
        n, vec = db.execute("SELECT n, vectors FROM blocks").fetchone()
        bad = np.frombuffer(vec, "<f4").copy()
        bad[0] = np.nan
        db.execute("UPDATE blocks SET vectors = ?", (bad.tobytes(),))
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute("INSERT INTO images(embedding_id, data) VALUES (999, x'00')")
    problems = check_gallery(path).problems
    assert any("NaN" in p for p in problems) and any("kept image" in p for p in problems)


# -- the audit trail -----------------------------------------------------------------------


def test_every_change_is_audited_in_its_transaction(tmp_path: Path, model_dir: Path) -> None:
    path = tmp_path / "a.db"
    imgs = random_images(3)
    with Gallery.create(path, model_dir) as g:
        g.enroll("alice", imgs[0], actor=Actor("door-admin", "10.0.0.7"))
        g.enroll("bob", imgs[1])
        g.set_threshold(2.5)
        g.remove("bob")
        change = g.last_change_id
        with pytest.raises(TwinshotError):  # refused: no change, no record
            g.enroll("alice", imgs[2])
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = read_audit(db)
    assert [r["action"] for r in rows] == ["enroll", "enroll", "set", "remove"]
    assert rows[0]["who"] == "door-admin" and rows[0]["client"] == "10.0.0.7" and rows[0]["identity"] == "alice"
    assert rows[-1]["change_id"] == change
    # the removed identity's name is gone from its records too (the right to be forgotten)
    assert rows[1]["identity"].startswith("forgotten:") and rows[1]["identity"] == rows[3]["identity"]
    assert b"bob" not in b"".join(str(r).encode() for r in rows)
    remove_identity(path, "alice", actor=Actor("cli"))
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        last = read_audit(db, after=change)
    assert [(r["action"], r["who"]) for r in last] == [("remove", "cli")]


def test_a_change_and_its_record_roll_back_together(tmp_path: Path, model_dir: Path) -> None:
    path = tmp_path / "r.db"
    with Gallery.create(path, model_dir) as g:
        g.enroll("alice", random_images(1)[0])

        def explode(*args, **kwargs):
            raise RuntimeError("disk gone mid-transaction")

        original = g._store._append_rows
        g._store._append_rows = explode  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            g.enroll("bob", random_images(1, seed=3)[0])
        g._store._append_rows = original  # type: ignore[method-assign]
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        assert [r["identity"] for r in read_audit(db)] == ["alice"]
    assert [r["name"] for r in describe(path)["identities"]] == ["alice"]


@pytest.fixture
def gallery_path(tmp_path: Path, model_dir: Path) -> Callable[[], Path]:
    def make() -> Path:
        path = tmp_path / "n.db"
        Gallery.create(path, model_dir, overwrite=True).close()
        return path

    return make


def test_a_folder_given_as_an_image_is_named_as_a_folder(filled: Path, tmp_path: Path) -> None:
    with Gallery.open(filled) as g, pytest.raises(DataError, match="is a folder"):
        g.identify(str(tmp_path))


# -- overwriting never pulls a gallery from under another process ---------------------------


def test_force_refuses_a_gallery_another_process_has_open(filled: Path, model_dir: Path) -> None:
    """``create --force`` over a gallery a server holds open would unlink its file and its
    write-ahead log under the server, losing every change the server confirmed after."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
         "c.execute('SELECT count(*) FROM identities').fetchall(); print('open', flush=True); sys.stdin.read()",
         str(filled)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        before = filled.read_bytes()
        with pytest.raises(TwinshotError, match="another process has this gallery open"):
            Gallery.create(filled, model_dir, overwrite=True)
        assert filled.read_bytes() == before
        assert describe(filled)["n_identities"] == 2
    finally:
        holder.communicate("", timeout=30)
    with Gallery.create(filled, model_dir, overwrite=True) as g:  # nobody holds it now
        assert len(g) == 0
