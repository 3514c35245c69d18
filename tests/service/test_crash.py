"""The crash harness (issue 11): ``kill -9`` at random moments of enroll, remove and
calibrate, in CLI processes and in the server, while reader processes list and check the
gallery. After every kill the gallery opens, passes ``gallery check``, has lost no
confirmed change (a command that exited 0, a request answered 2xx), holds an audit record
for every change that took effect and none for a change that did not; after a restart
the service's audit log holds every change too.

Small counts here (the suite runs it in about a minute); ``CRASH_ROUNDS=N`` runs more
(the figures in docs/reliability.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from twinshot.gallery import check_gallery, describe

from tests.service.conftest import glyph, new_gallery, new_keys, png
from tests.service.procs import cli_popen, env, serve

pytestmark = pytest.mark.slow

ROUNDS = int(os.environ.get("CRASH_ROUNDS", "3"))

_READER = """
import sys, time
from twinshot.gallery import check_gallery, describe
path, stop = sys.argv[1], sys.argv[2]
import os
n = 0
while not os.path.exists(stop):
    describe(path)
    if n % 5 == 0:
        report = check_gallery(path)
        if not report.ok:
            print("PROBLEM", report.problems, flush=True)
    n += 1
    time.sleep(0.02)
print("READS", n, flush=True)
"""


def audit_rows(gallery: Path) -> list[dict]:
    with sqlite3.connect(f"file:{gallery}?mode=ro", uri=True) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit'").fetchone():
            return []
        return [
            {"id": r[0], "action": r[1], "identity": r[2]}
            for r in db.execute("SELECT id, action, identity FROM audit ORDER BY id")
        ]


def pseudonym(gallery: Path, name: str) -> str | None:
    with sqlite3.connect(f"file:{gallery}?mode=ro", uri=True) as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'audit_salt'").fetchone()
    return None if row is None else "forgotten:" + hashlib.sha256((row[0] + "\0" + name).encode()).hexdigest()[:16]


class Ledger:
    """What the harness knows: changes confirmed, changes attempted (maybe applied)."""

    def __init__(self) -> None:
        self.confirmed_present: set[str] = set()  # enrolled (2xx / exit 0), not removed since
        self.confirmed_absent: set[str] = set()  # removed (2xx / exit 0)
        self.calibrations_confirmed = 0
        self.kills = 0
        self.confirmed = 0
        self.unconfirmed = 0
        self.killed_ops: dict[str, int] = {}

    def verify(self, gallery: Path) -> None:
        """The invariants after a kill."""
        report = check_gallery(gallery)
        assert report.ok, report.problems
        names = {r["name"] for r in describe(gallery)["identities"]}
        assert self.confirmed_present <= names, f"lost confirmed enrollments: {self.confirmed_present - names}"
        assert not (self.confirmed_absent & names), f"confirmed removals undone: {self.confirmed_absent & names}"
        rows = audit_rows(gallery)
        enrolled = [r["identity"] for r in rows if r["action"] == "enroll"]
        removed = {r["identity"] for r in rows if r["action"] == "remove"}
        for name in names:  # every enrollment in effect has its record
            assert name in enrolled, f"{name} is enrolled without an audit record"
        for name in self.confirmed_absent:
            assert pseudonym(gallery, name) in removed, f"the removal of {name} has no audit record"
        # no record of a change that did not take effect: names are never reused, so each
        # enrolled name has exactly one enroll record (under its name or, once removed, its pseudonym)
        assert len(enrolled) == len(set(enrolled)), "an enrollment recorded twice"
        calibrations = sum(r["action"] == "calibrate" for r in rows)
        assert calibrations >= self.calibrations_confirmed


@pytest.fixture
def setup(tmp_path: Path, model_dir: Path):
    gallery = new_gallery(tmp_path / "g.db", model_dir)
    keys, admin, _ = new_keys(tmp_path / "keys.json")
    images = tmp_path / "images"
    images.mkdir()
    for c in range(6):
        for j in range(3):
            (images / f"c{c}_{j}.png").write_bytes(png(glyph(c, jitter=j)))
    pairs = ["path1,path2,same"]
    for c in range(6):
        pairs += [f"c{c}_0.png,c{c}_1.png,1", f"c{c}_1.png,c{c}_2.png,1", f"c{c}_0.png,c{(c + 1) % 6}_0.png,0", f"c{c}_2.png,c{(c + 2) % 6}_1.png,0"]
    (images / "pairs.csv").write_text("\n".join(pairs) + "\n")
    return gallery, keys, admin, images


def start_readers(gallery: Path, stop: Path, n: int = 2) -> list[subprocess.Popen]:
    return [
        subprocess.Popen([sys.executable, "-c", _READER, str(gallery), str(stop)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        for _ in range(n)
    ]


def stop_readers(readers: list[subprocess.Popen], stop: Path) -> int:
    stop.touch()
    total = 0
    for r in readers:
        out, err = r.communicate(timeout=120)
        assert r.returncode == 0 and "PROBLEM" not in out, (out, err[-2000:])
        total += int(out.split()[-1])
    return total


def test_kill_minus_nine_loses_nothing(setup, tmp_path: Path) -> None:
    gallery, keys, admin, images = setup
    rng = random.Random(11)
    ledger = Ledger()
    stop = tmp_path / "stop-readers"
    readers = start_readers(gallery, stop)
    counter = iter(range(10**6))
    try:
        # -- CLI writers, killed at random moments ------------------------------------
        for _ in range(2 * ROUNDS):
            op = rng.choice(["enroll", "enroll", "remove", "calibrate"])
            if op == "remove" and not ledger.confirmed_present:
                op = "enroll"
            if op == "enroll":
                name = f"cli-{next(counter)}"
                args = ["gallery", "enroll", gallery, name, images / f"c{rng.randrange(6)}_0.png"]
            elif op == "remove":
                name = sorted(ledger.confirmed_present)[0]
                args = ["gallery", "remove", gallery, name]
            else:
                args = ["gallery", "calibrate", gallery, "--pairs", images / "pairs.csv", "--eer", "--bootstrap", "20"]
            proc = cli_popen(*args)
            time.sleep(rng.uniform(0.5, 6.0))  # a CLI process takes a few seconds in all
            if proc.poll() is None:
                proc.kill()
                ledger.kills += 1
                ledger.killed_ops[f"cli {op}"] = ledger.killed_ops.get(f"cli {op}", 0) + 1
            proc.wait()
            _, err = proc.communicate()
            if proc.returncode == 0:
                ledger.confirmed += 1
                if op == "enroll":
                    ledger.confirmed_present.add(name)
                elif op == "remove":
                    ledger.confirmed_present.discard(name)
                    ledger.confirmed_absent.add(name)
                else:
                    ledger.calibrations_confirmed += 1
            else:
                assert proc.returncode == -9, err[-2000:]  # killed, never failed
                ledger.unconfirmed += 1
                if op == "remove":  # maybe removed: no longer a confirmed presence
                    ledger.confirmed_present.discard(name)
            ledger.verify(gallery)

        # -- the server, killed in the middle of a stream of changes -------------------
        for _ in range(ROUNDS):
            server = serve(gallery, keys, admin)
            outcomes: list[tuple[str, str, int]] = []
            failures: list[str] = []

            def client() -> None:
                with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}, timeout=60) as c:
                    present = sorted(ledger.confirmed_present)
                    for i in range(40):
                        try:
                            if i % 4 == 1:  # the server reads its own live file too (issue 11, defect 1)
                                listed = c.get("/v1/identities")
                                if listed.status_code != 200:
                                    failures.append(listed.text)
                            if i % 3 == 2 and present:
                                name = present.pop()
                                outcomes.append(("remove", name, -1))
                                status = c.delete(f"/v1/identities/{name}").status_code
                            else:
                                name = f"srv-{next(counter)}"
                                outcomes.append(("enroll", name, -1))
                                status = c.post(f"/v1/identities/{name}/images", files={"images": ("x.png", png(glyph(i % 6)))}).status_code
                            outcomes[-1] = (outcomes[-1][0], name, status)
                        except httpx.HTTPError:
                            return  # the server is gone

            thread = threading.Thread(target=client)
            thread.start()
            time.sleep(rng.uniform(0.2, 2.5))
            server.kill()
            ledger.kills += 1
            ledger.killed_ops["server"] = ledger.killed_ops.get("server", 0) + 1
            thread.join(timeout=60)
            assert not failures, failures[:3]
            for op, name, status in outcomes:
                if status == 200:
                    ledger.confirmed += 1
                    if op == "enroll":
                        ledger.confirmed_present.add(name)
                    else:
                        ledger.confirmed_present.discard(name)
                        ledger.confirmed_absent.add(name)
                else:
                    assert status == -1, (op, name, status)  # only cut off by the kill
                    ledger.unconfirmed += 1
                    if op == "remove":
                        ledger.confirmed_present.discard(name)
            ledger.verify(gallery)
    finally:
        reads = stop_readers(readers, stop)

    # a restart reconciles the service's audit log with the gallery's records
    server = serve(gallery, keys, admin)
    server.stop()
    logged = set()
    for line in Path(f"{gallery}.audit.log").read_text().splitlines():
        try:
            logged.add(json.loads(line).get("change_id"))
        except ValueError:
            pass
    missing = [r for r in audit_rows(gallery) if r["id"] not in logged]
    assert not missing, missing[:5]
    print(
        f"\ncrash harness: {ledger.kills} kill -9 ({ledger.killed_ops}), {ledger.confirmed} confirmed changes (0 lost), "
        f"{ledger.unconfirmed} cut off, {reads} reads by 2 reader processes (0 errors), "
        f"{len(audit_rows(gallery))} audit records, all in the service's log after restart"
    )
