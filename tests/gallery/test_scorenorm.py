"""Cohort score normalisation stored in a gallery: identify and verify use it, calibration
simulates with it, and it can be switched off again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.gallery.helpers import saved_model
from twinshot.cli.main import cli
from twinshot.data import load_dataset
from twinshot.errors import ConfigError
from twinshot.gallery import Gallery
from twinshot.gallery.cohort import CohortNorm
from twinshot.gallery.embedding import embed_uint8
from twinshot.gallery.identification import calibrate_gallery
from twinshot.gallery.scorenorm import set_score_norm, stored_norm


@pytest.fixture
def gallery(tmp_path: Path, image_folder: Path):
    model = saved_model(tmp_path / "model", head="euclidean")
    files = sorted((image_folder / "alphabet0").rglob("*.png"))  # 4 classes x 5 images
    g = Gallery.create(tmp_path / "g.db", model)
    for c in range(4):
        g.enroll(f"c{c}", [files[5 * c]])
    yield g, files
    g.close()


@pytest.mark.parametrize("method", ["znorm", "tnorm", "snorm", "asnorm"])
def test_identify_and_verify_use_the_stored_normalisation(gallery, image_folder: Path, method: str) -> None:
    g, files = gallery
    cohort_dir = image_folder / "alphabet1"
    info = set_score_norm(g, method, cohort=cohort_dir, top_k=5)
    assert info["method"] == method and info["cohort_size"] == 20
    norm = stored_norm(g._meta)
    cohort = embed_uint8(g.embedder, load_dataset(cohort_dir, g.embedder.preprocessing).images.numpy())
    np.testing.assert_allclose(norm.cohort, cohort, rtol=1e-6)
    queries = [files[1], files[6]]
    q = g.embed(queries)
    refs = g.embed([files[5 * c] for c in range(4)])
    expected = CohortNorm(method, cohort, top_k=5).apply(g.embedder.pairwise_logits(q, refs), q, refs, g.embedder.pairwise_logits)
    results = g.identify(queries, k=4, threshold=-1e9)
    for i, r in enumerate(results):
        got = {c.identity: c.score for c in r.candidates}
        assert got == pytest.approx({f"c{c}": expected[i, c] for c in range(4)}, rel=1e-4, abs=1e-4)
        assert [c.score for c in r.candidates] == sorted((c.score for c in r.candidates), reverse=True)
    v = g.verify(files[1], files[0])
    assert v.score == pytest.approx(expected[0, 0], rel=1e-4, abs=1e-4)
    set_score_norm(g, "none")
    assert stored_norm(g._meta) is None
    raw = g.identify(queries[:1], k=1, threshold=-1e9)[0]
    assert raw.score == pytest.approx(float(g.embedder.pairwise_logits(q[:1], refs).max()), rel=1e-5)


def test_calibrate_uses_it_and_refuses_the_cohort_as_calibration(gallery, image_folder: Path) -> None:
    g, _ = gallery
    plain = calibrate_gallery(g, image_folder / "alphabet1", fpir=0.2, simulations=2)
    set_score_norm(g, "tnorm", cohort=image_folder / "alphabet0")
    normalised = calibrate_gallery(g, image_folder / "alphabet1", fpir=0.2, simulations=2)
    assert normalised.threshold != plain.threshold and g.threshold == normalised.threshold
    with pytest.raises(ConfigError, match="cohort is the calibration folder"):
        calibrate_gallery(g, image_folder / "alphabet0", fpir=0.2)
    with pytest.raises(ConfigError, match="needs --cohort"):
        set_score_norm(g, "znorm")
    with pytest.raises(ConfigError, match="unknown score normalisation"):
        set_score_norm(g, "lnorm", cohort=image_folder)


def test_cli_normalise(capsys, gallery, image_folder: Path) -> None:
    g, _ = gallery
    path = str(g.path)
    g.close()
    assert cli(["gallery", "normalise", path, "--method", "asnorm", "--cohort", str(image_folder / "alphabet1"), "--top-k", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["method"], out["top_k"], out["cohort_size"]) == ("asnorm", 4, 20)
    assert cli(["gallery", "normalise", path, "--method", "none"]) == 0
    assert "raw scores" in capsys.readouterr().out
    assert cli(["gallery", "normalise", path, "--method", "znorm"]) == 2
    assert capsys.readouterr().err.startswith("error: score normalisation 'znorm' needs --cohort")
