"""A gallery of a shipped model (``--model faces-orl``) finds its cached ONNX export by the
shipped name, like a run directory does: ``gallery identify`` then never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from twinshot.cli.main import cli

CHILD = r"""
import json, pathlib, sys
import twinshot.gallery.inference as inference
inference.DEFAULT_CACHE_DIR = pathlib.Path(sys.argv[1])
from twinshot.cli.main import cli
code = cli(["gallery", "identify", sys.argv[2], sys.argv[3], "--json"])
print("RESULT" + json.dumps({"code": code, "torch": "torch" in sys.modules}))
"""


def test_shipped_model_gallery_identifies_without_torch(tmp_path: Path, _onnx_cache: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    faces = []
    for i in range(3):
        path = tmp_path / f"face{i}.png"
        Image.fromarray(rng.integers(0, 256, (56, 46), dtype=np.uint8)).save(path)
        faces.append(str(path))
    gallery = str(tmp_path / "door.db")
    assert cli(["gallery", "create", gallery, "--model", "faces-orl", "--json"]) == 0
    assert cli(["gallery", "enroll", gallery, "alice", faces[0], "--json"]) == 0  # fills the cache
    capsys.readouterr()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(_onnx_cache), gallery, faces[1]],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out == {"code": 0, "torch": False}, proc.stdout
