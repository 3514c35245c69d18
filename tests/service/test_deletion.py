"""Privacy: images are not stored, deletion is real (the rows and their bytes are gone from
the SQLite file and its write-ahead log), and enroll/delete are audited without images."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import httpx
import numpy as np

from tests.service.conftest import glyph, png

FORGET = "person-to-forget-7f3a"


def file_bytes(gallery: Path) -> bytes:
    """The gallery file and its write-ahead log, as they are on disk now. Read by another
    process (``cat``): opening and closing a live database file in the server's own process
    would drop the server's SQLite locks (POSIX; issue 11)."""
    paths = [str(p) for p in (gallery, Path(f"{gallery}-wal")) if p.exists()]
    return subprocess.run(["cat", *paths], capture_output=True, check=True).stdout


def stored_vector(gallery: Path, identity: str) -> bytes:
    """The bytes of ``identity``'s (one) embedding as the file stores them: a little-endian
    float32 row of its block (see :mod:`twinshot.gallery.store`)."""
    with sqlite3.connect(f"file:{gallery}?mode=ro", uri=True) as db:
        image_id, block_id = db.execute(
            "SELECT e.id, e.block_id FROM embeddings e JOIN identities i ON i.id = e.identity_id WHERE i.name = ?", (identity,)
        ).fetchone()
        n, ids, vectors = db.execute("SELECT n, ids, vectors FROM blocks WHERE id = ?", (block_id,)).fetchone()
    row = int(np.nonzero(np.frombuffer(ids, "<i8") == image_id)[0][0])
    dim = len(vectors) // (4 * n)
    return bytes(vectors[row * 4 * dim : (row + 1) * 4 * dim])


def enroll_three(live, c: httpx.Client) -> None:
    for name, cls in (("keep-a", 0), (FORGET, 1), ("keep-b", 3)):
        r = c.post(
            f"/v1/identities/{name}/images", files=[("images", (f"{name}.png", png(glyph(cls))))],
            data={"metadata": json.dumps({"badge": cls})}, headers=live.headers(live.admin),
        )
        assert r.status_code == 200, r.text


def test_deletion_is_real(start) -> None:
    live = start()
    with httpx.Client(base_url=live.url, timeout=20) as c:
        enroll_three(live, c)
        vector, kept = stored_vector(live.gallery, FORGET), stored_vector(live.gallery, "keep-a")
        assert len(vector) == 16 * 4
        assert vector in file_bytes(live.gallery)  # the check below can see it
        r = c.delete(f"/v1/identities/{FORGET}", headers=live.headers(live.admin))
        assert r.status_code == 200 and r.json() == {"identity": FORGET, "removed": 1}

        # the rows are gone, read straight from the file
        with sqlite3.connect(f"file:{live.gallery}?mode=ro", uri=True) as db:
            names = [r[0] for r in db.execute("SELECT name FROM identities ORDER BY name")]
            n_embeddings = db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
            blobs = b"".join(r[0] for r in db.execute("SELECT vectors FROM blocks"))
        assert names == ["keep-a", "keep-b"] and n_embeddings == 2
        assert vector not in blobs and kept in blobs
        # and so are their bytes: no free page, no old WAL frame holds them
        on_disk = file_bytes(live.gallery)
        assert vector not in on_disk and vector[:16] not in on_disk
        assert FORGET.encode() not in on_disk
        assert kept in on_disk
        # the service goes on
        assert c.post("/v1/identify", files={"image": ("q.png", png(glyph(1)))}, headers=live.headers(live.read)).json()["identity"] is None
        assert c.post("/v1/identify", files={"image": ("q.png", png(glyph(0)))}, headers=live.headers(live.read)).json()["identity"] == "keep-a"


def test_without_scrubbing_the_bytes_would_remain(start) -> None:
    """The control of the test above: SQLite alone leaves the deleted vector in the WAL."""
    live = start(config={"scrub_on_delete": False})
    with httpx.Client(base_url=live.url, timeout=20) as c:
        enroll_three(live, c)
        vector = stored_vector(live.gallery, FORGET)
        assert c.delete(f"/v1/identities/{FORGET}", headers=live.headers(live.admin)).status_code == 200
    assert vector in file_bytes(live.gallery)


def test_images_are_not_stored(start, tmp_path: Path) -> None:
    from starlette.formparsers import MultiPartParser

    live = start()
    before = sorted(p.name for p in tmp_path.iterdir())
    image = png(glyph(4, size=64))
    with httpx.Client(base_url=live.url, timeout=20) as c:
        r = c.post("/v1/identities/ann/images", files=[("images", ("ann.png", image))], headers=live.headers(live.admin))
        assert r.status_code == 200
    with sqlite3.connect(f"file:{live.gallery}?mode=ro", uri=True) as db:
        assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0
    assert image not in file_bytes(live.gallery)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no file appeared beside the gallery
    assert MultiPartParser.spool_max_size > live.app.state.engine.limits.max_body_bytes  # uploads stay in memory


def test_kept_images_are_deleted_too(start, make_gallery) -> None:
    live = start(make_gallery("kept.db", keep_images=True))
    image = png(glyph(6, size=48))
    with httpx.Client(base_url=live.url, timeout=20) as c:
        c.post("/v1/identities/ann/images", files=[("images", ("ann.png", image))], headers=live.headers(live.admin))
        c.post("/v1/identities/ben/images", files=[("images", ("ben.png", png(glyph(2))))], headers=live.headers(live.admin))
        assert image in file_bytes(live.gallery)
        assert c.delete("/v1/identities/ann", headers=live.headers(live.admin)).status_code == 200
    assert image not in file_bytes(live.gallery)


def test_audit_log_names_who_what_when_never_images(start) -> None:
    live = start()
    image = png(glyph(5))
    with httpx.Client(base_url=live.url, timeout=20) as c:
        c.post("/v1/identities/ann/images", files=[("images", ("ann.png", image))], data={"metadata": '{"secret": "s3cr3t"}'}, headers=live.headers(live.admin))
        c.post("/v1/identities/ann/images", files=[("images", ("ann.png", image))], headers=live.headers(live.admin))  # 409
        c.post("/v1/identify", files={"image": ("q.png", image)}, headers=live.headers(live.read))  # not audited
        c.delete("/v1/identities/ann", headers=live.headers(live.admin))
    raw = live.audit.read_bytes()
    entries = [json.loads(line) for line in raw.decode().splitlines()]
    assert [(e["action"], e["outcome"], e["status"]) for e in entries] == [
        ("enroll", "ok", 200), ("enroll", "already_enrolled", 409), ("delete", "ok", 200)
    ]
    for e in entries:
        assert e["who"] == "boss" and e["identity"] == "ann" and e["time"].endswith("+00:00") and e["client"] == "127.0.0.1"
    assert entries[0]["references"] == 1 and entries[2]["references"] == 1
    assert image not in raw and b"s3cr3t" not in raw and b"PNG" not in raw
