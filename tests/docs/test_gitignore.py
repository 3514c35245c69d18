"""Running the README's and docs/' flows from the repository root leaves nothing that git
would show: every file name they create (as the doc-test runner found them) is ignored."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LEFTOVERS = [
    "office.db", "office.db-wal", "office.db.audit.log", "bank.db", "faces.db", "door.db", "drawings.db",
    "keys.json", "calib.csv", "heldout_pairs.csv", "calibration/s5", "calib/s5", "heldout/s5", "sig-heldout/4",
    "images_background/Hebrew", "staff/character02", "staff.db", "report-faces/report.html", "encoder.onnx", "encoder.onnx.json", "runs/demo",
    "test/skilled.csv", "calib/all.csv", "report-cedar/report.html", "chars.db",
]


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_doc_leftovers_are_ignored() -> None:
    proc = subprocess.run(["git", "check-ignore", "--no-index", *LEFTOVERS], cwd=REPO, capture_output=True, text=True)
    ignored = set(proc.stdout.split())
    assert set(LEFTOVERS) == ignored, sorted(set(LEFTOVERS) - ignored)
