"""``twinshot gallery enroll-folder --workers`` and ``twinshot embed`` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from twinshot.cli.main import cli

from tests.conftest import make_image_folder
from tests.gallery.helpers import saved_model


def _run(capsys, *args: object) -> tuple[int, str, str]:
    code = cli([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_enroll_folder_with_workers_resumes_and_embed_writes_npz(tmp_path: Path, capsys) -> None:
    model = saved_model(tmp_path / "m")
    folder = make_image_folder(tmp_path / "f", groups=1, classes_per_group=3, per_class=2)
    gallery = tmp_path / "g.db"
    assert _run(capsys, "gallery", "create", gallery, "--model", model, "--inference", "torch")[0] == 0
    code, out, err = _run(capsys, "gallery", "enroll-folder", gallery, folder, "--workers", "1", "--inference", "torch", "--json")
    assert code == 0, err
    first = json.loads(out)
    assert (first["n_enrolled"], first["n_skipped"], first["n_references"], first["n_embeddings"]) == (3, 0, 6, 6)
    code, out, err = _run(capsys, "gallery", "enroll-folder", gallery, folder, "--workers", "1", "--inference", "torch")
    assert code == 0 and "enrolled 0 identities" in out and "3 already enrolled, skipped" in out
    code, out, err = _run(capsys, "gallery", "enroll-folder", gallery, folder, "--workers", "1", "--replace")
    assert code == 2 and err.startswith("error: --workers") and "Traceback" not in err
    code, out, err = _run(capsys, "gallery", "enroll-folder", gallery, folder, "--workers", "1", "--shard", "3/2")
    assert code == 2 and "shard" in err
    code, out, err = _run(capsys, "embed", model, folder, tmp_path / "e.npz", "--workers", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["n_images"] == 6
    assert np.load(tmp_path / "e.npz")["embeddings"].shape == (6, 16)
    code, out, err = _run(capsys, "embed", model, folder, tmp_path / "e.csv")
    assert code == 2 and ".npz or .npy" in err
