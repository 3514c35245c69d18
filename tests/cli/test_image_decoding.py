"""The door bug through the command line (issue 11, defect 2): 16-bit photos of two people
once read as blank pages and verified as "same: 0.999"; blank images were accepted and
matched each other. Now a 16-bit photo answers like its 8-bit version, and an image with no
content is refused with ``error: FILE: ...`` (exit 2) and never enrolled or matched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from twinshot.cli.main import cli


def run(capsys, *args: object) -> tuple[int, str, str]:
    code = cli([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def faces(datasets_dir: Path, tmp_path: Path) -> dict[str, Path]:
    """ORL faces of subjects s1 and s2 (8-bit PGM) and their 16-bit PNG copies."""
    out = {}
    for subject in ("s1", "s2"):
        for n in (1, 2):
            src = datasets_dir / "orl_faces" / subject / f"{n}.pgm"
            out[f"{subject}_{n}"] = src
            sixteen = tmp_path / f"{subject}_{n}_16bit.png"
            with Image.open(src) as im:
                Image.fromarray(np.asarray(im).astype(np.uint16) * 257).save(sixteen)
            out[f"{subject}_{n}_16"] = sixteen
    return out


def blanks(tmp_path: Path) -> dict[str, Path]:
    shapes = {
        "white.png": np.full((112, 92), 255, np.uint8),
        "black.png": np.zeros((112, 92), np.uint8),
        "dot.png": np.zeros((1, 1), np.uint8),
        "strip.png": (np.arange(20000) % 2 * 255).astype(np.uint8)[None],
        "grey16.png": np.full((112, 92), 40000, np.uint16),
    }
    paths = {}
    for name, arr in shapes.items():
        Image.fromarray(arr).save(tmp_path / name)
        paths[name] = tmp_path / name
    return paths


def test_a_16bit_pair_verifies_like_its_8bit_version(capsys, faces: dict[str, Path]) -> None:
    for a, b in (("s1_1", "s2_1"), ("s1_1", "s1_2")):
        code, out, err = run(capsys, "verify", "faces-orl", faces[a], faces[b], "--json")
        assert code == 0, err
        eight = json.loads(out)
        code, out, err = run(capsys, "verify", "faces-orl", faces[a + "_16"], faces[b + "_16"], "--json")
        assert code == 0, err
        sixteen = json.loads(out)
        assert sixteen["same"] == eight["same"] and sixteen["score"] == pytest.approx(eight["score"], abs=1e-3)
    assert eight["score"] > json.loads(run(capsys, "verify", "faces-orl", faces["s1_1_16"], faces["s2_1_16"], "--json")[1])["score"]
    code, out, _ = run(capsys, "verify", "faces-orl", faces["s1_1_16"], faces["s2_1_16"])
    assert out.startswith("different")  # the defect answered "same: probability 0.999"


def test_blank_images_are_refused_by_verify(capsys, tmp_path: Path, faces: dict[str, Path]) -> None:
    for name, path in blanks(tmp_path).items():
        for pair in ((path, path), (faces["s1_1"], path)):
            code, out, err = run(capsys, "verify", "faces-orl", *pair)
            assert code == 2 and out == "", (name, out)
            reason = "aspect ratio of 20000:1, over the limit of 20:1" if name == "strip.png" else "the image has no content"
            assert err.startswith(f"error: {path}: ") and reason in err and err.count("\n") == 1, err
            assert "Traceback" not in err


def test_blank_images_never_enter_or_match_a_gallery(capsys, tmp_path: Path, faces: dict[str, Path]) -> None:
    gallery = tmp_path / "door.db"
    assert run(capsys, "gallery", "create", gallery, "--model", "faces-orl")[0] == 0
    code, _, err = run(capsys, "gallery", "enroll", gallery, "alice", faces["s1_1_16"], faces["s1_2"])
    assert code == 0, err
    bad = blanks(tmp_path)
    for name, path in bad.items():
        code, out, err = run(capsys, "gallery", "enroll", gallery, "mallory", faces["s2_1"], path)
        assert code == 2 and err.startswith(f"error: {path}: "), err
        code, out, err = run(capsys, "gallery", "identify", gallery, path)
        assert code == 2 and err.startswith(f"error: {path}: ") and out == "", err
    listed = json.loads(run(capsys, "gallery", "list", gallery, "--json")[1])
    assert [r["name"] for r in listed["identities"]] == ["alice"] and listed["n_embeddings"] == 2  # nothing half-enrolled

    # the 16-bit and 8-bit photos of one person give one answer
    eight = json.loads(run(capsys, "gallery", "identify", gallery, faces["s2_1"], "--json")[1])
    sixteen = json.loads(run(capsys, "gallery", "identify", gallery, faces["s2_1_16"], "--json")[1])
    assert sixteen[0]["identity"] == eight[0]["identity"]
    assert sixteen[0]["score"] == pytest.approx(eight[0]["score"], abs=1e-3)
