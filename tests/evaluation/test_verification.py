"""Verification on a pairs CSV: scores against the network's own forward pass, metrics
against scikit-learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from tests.evaluation.fixtures import reference_scores, sk_eer, write_pairs
from tests.evaluation.models import small_model
from twinshot.errors import DataError
from twinshot.evaluation import VerificationResult, evaluate_verification, pair_scores, read_pairs_csv
from twinshot.evaluation import verification as verification_module


@pytest.fixture
def pairs_csv(image_folder: Path) -> Path:
    return write_pairs(image_folder, image_folder / "pairs.csv")


@pytest.mark.parametrize("head", ["cosine", "euclidean", "weighted_l1"])
def test_pair_scores_match_forward(pairs_csv: Path, head: str) -> None:
    model = small_model(head)
    pairs = read_pairs_csv(pairs_csv)
    scores, same = pair_scores(model, pairs, batch_size=7)
    assert scores.dtype == np.float64 and same.dtype == np.bool_
    np.testing.assert_allclose(scores, reference_scores(model, pairs), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(same, [p.same for p in pairs])


def test_each_image_decoded_once(pairs_csv: Path, monkeypatch) -> None:
    calls: list[str] = []
    real = verification_module.load_image

    def counting(source, preprocessing, **kw):
        calls.append(str(source))
        return real(source, preprocessing, **kw)

    monkeypatch.setattr(verification_module, "load_image", counting)
    pairs = read_pairs_csv(pairs_csv)
    pair_scores(small_model(), pairs)
    distinct = {str(p) for pair in pairs for p in (pair.path1, pair.path2)}
    assert sorted(calls) == sorted(distinct)


def test_evaluate_verification_matches_sklearn(pairs_csv: Path) -> None:
    model = small_model()
    result = evaluate_verification(model, pairs_csv)
    assert isinstance(result, VerificationResult)
    pairs = read_pairs_csv(pairs_csv)
    ref = reference_scores(model, pairs)
    same = np.array([p.same for p in pairs])
    assert result.auc == pytest.approx(roc_auc_score(same, ref), abs=1e-6)
    assert result.eer == pytest.approx(sk_eer(ref, same), abs=1e-6)
    fpr, tpr, _ = roc_curve(same, ref, drop_intermediate=False)
    assert result.tar_at_far == pytest.approx({"1e-2": tpr[fpr <= 1e-2].max(), "1e-3": tpr[fpr <= 1e-3].max()})
    assert (result.n_genuine, result.n_impostor) == (30, 30)
    d = result.to_dict()
    assert set(d) >= {"auc", "eer", "eer_threshold", "tar_at_far", "n_genuine", "n_impostor"}


def test_verification_errors(pairs_csv: Path, tmp_path: Path) -> None:
    model = small_model()
    with pytest.raises(DataError, match="no such pairs file"):
        evaluate_verification(model, tmp_path / "missing.csv")
    bad_image = pairs_csv.parent / "bad.csv"
    bad_image.write_text("path1,path2,same\nalphabet0/character01/0000_01.png,nothere.png,false\n")
    with pytest.raises(DataError, match="nothere.png"):
        evaluate_verification(model, bad_image)


def test_all_same_pairs_is_an_error(pairs_csv: Path) -> None:
    lines = pairs_csv.read_text().splitlines()
    only_same = pairs_csv.parent / "same.csv"
    only_same.write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if ln.endswith("true")]) + "\n")
    with pytest.raises(DataError, match="every pair is same"):
        evaluate_verification(small_model(), only_same)
