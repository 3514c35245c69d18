"""Claimed-identity verify scored by the claimed identity's SVM, behind a real SQLite gallery
with kept CEDAR images: the scores equal a hand-fitted SVM, the cache is refitted when the
identity or its cohort changes, and bad setups get clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from twinshot.errors import ConfigError, DataError
from twinshot.gallery import Gallery, UnknownIdentity
from twinshot.models import ModelSpec, build_model
from twinshot.preprocessing import Preprocessing
from twinshot.writer_dependent import image_features, writer_scores
from twinshot.writer_dependent.gallery_claims import SVMClaimConfig, SVMClaimVerification, WriterSVMClaims, svm_claims


def _model():
    torch.manual_seed(0)
    pre = Preprocessing(size=(30, 44), invert=True, keep_aspect=True)
    params = {"input_width": 44, "widths": [4, 8, 8], "grid": [1, 2], "hidden": 6, "embedding_dim": 5}
    return build_model(ModelSpec("signet", params, "euclidean", {}, pre)).eval()


@pytest.fixture()
def cedar(datasets_dir: Path) -> Path:
    root = datasets_dir / "cedar"
    if not root.is_dir():
        pytest.skip("cedar not found")
    return root


def _genuine(cedar: Path, writer: int, numbers: range) -> list[Path]:
    return [cedar / "full_org" / f"original_{writer}_{n}.png" for n in numbers]


def test_svm_claims_match_a_hand_fitted_svm(tmp_path: Path, cedar: Path) -> None:
    model = _model()
    g = Gallery.create(tmp_path / "g.db", model, keep_images=True)
    refs = {w: _genuine(cedar, w, range(1, 4)) for w in (1, 2, 3)}
    for w, paths in refs.items():
        g.enroll(str(w), paths)
    questioned = [cedar / "full_org" / "original_1_10.png", cedar / "full_forg" / "forgeries_1_1.png"]
    scorer = WriterSVMClaims(g, SVMClaimConfig(layer="hog", augment=0))
    got = scorer.verify("1", questioned)
    f = lambda paths: image_features(model, paths, "hog")  # noqa: E731
    expected = writer_scores(f(refs[1]), f(questioned), f(refs[2] + refs[3]))
    np.testing.assert_allclose([c.score for c in got], expected, rtol=1e-6, atol=1e-8)
    assert all(isinstance(c, SVMClaimVerification) and c.references == 3 and c.cohort == 6 for c in got)
    assert [c.same for c in got] == (expected >= 0.0).tolist()
    d = got[0].to_dict()
    assert d["rule"] == "svm" and d["scoring"] == "svm" and d["probability"] is None and d["layer"] == "hog"
    high = scorer.verify("1", questioned, threshold=1e9)
    assert not any(c.same for c in high) and high[0].threshold == 1e9
    g.close()


def test_cache_is_refitted_when_the_identity_or_cohort_changes(tmp_path: Path, cedar: Path) -> None:
    g = Gallery.create(tmp_path / "g.db", _model(), keep_images=True)
    g.enroll("1", _genuine(cedar, 1, range(1, 3)))
    g.enroll("2", _genuine(cedar, 2, range(1, 3)))
    scorer = WriterSVMClaims(g, SVMClaimConfig(augment=2))
    q = [cedar / "full_org" / "original_1_9.png"]
    first = scorer.verify("1", q)[0]
    clf, n_refs, n_cohort = scorer.classifier("1")
    assert (n_refs, n_cohort) == (2, 2) and scorer.classifier("1")[0] is clf  # cached
    assert scorer.verify("1", q)[0].score == first.score
    g.enroll("1", _genuine(cedar, 1, range(3, 4)), add=True)  # the identity changes
    assert scorer.classifier("1")[1] == 3 and scorer.classifier("1")[0] is not clf
    clf = scorer.classifier("1")[0]
    g.enroll("3", _genuine(cedar, 3, range(1, 3)))  # its cohort changes
    assert scorer.classifier("1")[2] == 4 and scorer.classifier("1")[0] is not clf
    g.remove("1")
    with pytest.raises(UnknownIdentity, match="'1'"):
        scorer.verify("1", q)
    g.close()


def test_verify_claim_hook_and_bad_setups(tmp_path: Path, cedar: Path) -> None:
    model = _model()
    g = Gallery.create(tmp_path / "g.db", model, keep_images=True)
    g.enroll("1", _genuine(cedar, 1, range(1, 3)))
    q = cedar / "full_org" / "original_1_9.png"
    with pytest.raises(DataError, match="cohort of at least two"):
        g.verify_claim("1", q, scoring="svm")
    g.enroll("2", _genuine(cedar, 2, range(1, 3)))
    r = g.verify_claim("1", q, scoring="svm")
    assert isinstance(r, SVMClaimVerification) and r.references == 2 and r.layer == "grid"
    assert svm_claims(g) is svm_claims(g)  # one cache per open gallery
    assert g.verify_claim("1", q).rule == "max"  # the distance rule is still the default
    with pytest.raises(ConfigError, match="unknown scoring 'best'"):
        g.verify_claim("1", q, scoring="best")
    with pytest.raises(UnknownIdentity, match="'9'"):
        g.verify_claim("9", q, scoring="svm")
    cohort = _genuine(cedar, 4, range(1, 4))
    given = WriterSVMClaims(g, cohort=cohort).verify("1", [q])[0]
    assert given.cohort == 3
    with pytest.raises(DataError, match="at least two images"):
        WriterSVMClaims(g, cohort=cohort[:1])
    g.close()
    plain = Gallery.create(tmp_path / "plain.db", model)
    plain.enroll("1", _genuine(cedar, 1, range(1, 3)))
    with pytest.raises(ConfigError, match="keep_images"):
        plain.verify_claim("1", q, scoring="svm")
    plain.close()
    with pytest.raises(ConfigError, match="unknown feature layer"):
        SVMClaimConfig(layer="conv9")
    with pytest.raises(ConfigError, match="augment"):
        SVMClaimConfig(augment=-1)
