"""Open-set metrics on hand-computed examples and through a gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twinshot.errors import DataError
from twinshot.gallery import Gallery, evaluate_open_set, open_set_metrics, threshold_at_fpir

from tests.gallery.helpers import random_images, tiny_model


def test_open_set_metrics_by_hand() -> None:
    # mated: a (right, 0.9), b (wrong, 0.8), c (right, 0.4), d (right, 0.7)
    # non-mated scores: 0.85, 0.5, 0.3, 0.1
    predicted = ["a", "x", "c", "d", "a", "b", "c", "d"]
    truth = ["a", "b", "c", "d", None, None, None, None]
    scores = np.array([0.9, 0.8, 0.4, 0.7, 0.85, 0.5, 0.3, 0.1])
    r = open_set_metrics(predicted, scores, truth, fpirs=(0.0, 0.25, 0.5, 1.0), threshold=0.6)
    assert r.n_mated == 4 and r.n_nonmated == 4 and r.rank1 == 0.75
    # FPIR 0: threshold just above 0.85 -> only a (0.9) is a hit
    assert r.threshold_at_fpir["0"] == pytest.approx(0.85) and r.threshold_at_fpir["0"] > 0.85
    assert r.dir_at_fpir["0"] == 0.25 and r.fpir_achieved["0"] == 0.0
    # FPIR 0.25: one non-mated may pass -> threshold just above 0.5 -> a, d
    assert r.dir_at_fpir["0.25"] == 0.5 and r.fpir_achieved["0.25"] == 0.25
    # FPIR 0.5: above 0.3 -> a, c, d
    assert r.dir_at_fpir["0.5"] == 0.75
    assert r.threshold_at_fpir["1"] == -np.inf and r.dir_at_fpir["1"] == 0.75
    # at threshold 0.6: hits a, d; unknowns accepted: 0.85 -> 1/4; misidentified: b (0.8)
    assert r.dir_at_threshold == 0.5 and r.fpir_at_threshold == 0.25 and r.misidentified_at_threshold == 0.25
    assert r.to_dict()["unknowns_accepted"] == 0.25


def test_threshold_at_fpir_with_ties() -> None:
    t = threshold_at_fpir(np.array([0.5, 0.5, 0.5, 0.1]), 0.25)
    assert t > 0.5  # accepting 0.5 would accept three of four
    assert threshold_at_fpir(np.array([0.5, 0.5, 0.5, 0.1]), 0.75) == pytest.approx(0.1)


def test_open_set_needs_both_kinds() -> None:
    with pytest.raises(DataError, match="both enrolled and unknown"):
        open_set_metrics(["a"], np.array([1.0]), ["a"])
    with pytest.raises(DataError, match="differ in length"):
        open_set_metrics(["a", "b"], np.array([1.0]), ["a"])


def test_evaluate_open_set_through_a_gallery(tmp_path: Path) -> None:
    model = tiny_model()
    imgs = random_images(8)
    with Gallery.create(tmp_path / "g.db", model) as g:
        for i in range(4):
            g.enroll(f"p{i}", imgs[i])
        # the enrolled images themselves are mated queries; the others are strangers
        truth = [f"p{i}" for i in range(4)] + ["stranger"] * 4
        report = evaluate_open_set(g, imgs, truth, fpirs=(0.0,))
        assert report.n_mated == 4 and report.n_nonmated == 4 and report.rank1 == 1.0
        assert report.dir_at_fpir["0"] == 1.0  # exact re-queries beat every stranger
        assert report.threshold == g.threshold and report.fpir_at_threshold is not None
