"""Claims scored by the writer SVM fused with a pair model: the fusion's arithmetic and
validation, the fusion stored with a model, and the fused score behind a real SQLite
gallery with kept CEDAR images (equal to the SVM's score plus the weighted pair scores)
and in the CEDAR claims protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from twinshot.errors import ConfigError
from twinshot.gallery import Gallery
from twinshot.models import ModelSpec, build_model, load_model, save_model
from twinshot.preprocessing import Preprocessing
from twinshot.writer_dependent.fusion import FUSION_KEY, ClaimFusion, embed_images, model_fusion, pair_scores
from twinshot.writer_dependent.gallery_claims import SVMClaimConfig, WriterSVMClaims, verify_claim_scored
from twinshot.writer_dependent.handcrafted import descriptor_size

from tests.writer_dependent.test_gallery_claims import _genuine, cedar  # noqa: F401 (cedar is a fixture)

H, W = 30, 44


def _pre() -> Preprocessing:
    return Preprocessing(size=(H, W), invert=True, keep_aspect=True)


def saved_fusion_models(root: Path) -> tuple[Path, Path, Path]:
    """Tiny saved models under ``root``: (a signet model storing a fusion with weight 0.25,
    max, threshold 0.1; its pair model; the same signet without a fusion)."""
    torch.manual_seed(0)
    pairs = build_model(ModelSpec("pair_input", {"input_width": W}, "twochannel_dichotomy",
                                  {"image_shape": [H, W], "widths": [4, 4, 4, 4, 4], "symmetric": True}, _pre())).eval()
    pairs.head.set_parts(np.random.default_rng(0).normal(0, 0.01, descriptor_size()), 0.5, [0.1, 2.0, -0.3, 0.5])
    pairs_dir = save_model(pairs, root / "pairs")
    params = {"input_width": W, "widths": [4, 8, 8], "grid": [1, 2], "hidden": 6, "embedding_dim": 5}
    signet = build_model(ModelSpec("signet", params, "euclidean", {}, _pre())).eval()
    fusion = ClaimFusion(str(pairs_dir), 0.25, "max", threshold=0.1, fitted_on="a test")
    return save_model(signet, root / "signet", extra={FUSION_KEY: fusion.to_dict()}), pairs_dir, save_model(signet, root / "plain")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return saved_fusion_models(tmp_path_factory.mktemp("fusion"))


def test_fuse_and_validation() -> None:
    svm = np.array([0.5, -1.0])
    pairs = np.array([[1.0, 3.0], [-2.0, 0.0]])
    np.testing.assert_allclose(ClaimFusion("p", 0.5).fuse(svm, pairs), [2.0, -1.0])
    np.testing.assert_allclose(ClaimFusion("p", 0.5, "mean").fuse(svm, pairs), [1.5, -1.5])
    np.testing.assert_allclose(ClaimFusion("p", 0.0).fuse(svm, pairs), svm)
    f = ClaimFusion("p", 0.2, "mean", 1.5, "splits")
    assert ClaimFusion.from_dict(f.to_dict()) == f
    for bad, match in (({"pairs_model": "", "weight": 1}, "pairs_model"), ({"pairs_model": "p", "weight": -1}, "weight"),
                       ({"pairs_model": "p", "weight": float("nan")}, "weight"), ({"pairs_model": "p", "weight": 1, "combine": "min"}, "combine"),
                       ({"pairs_model": "p"}, "not a valid"), ({"pairs_model": "p", "weight": "x"}, "not a valid")):
        with pytest.raises(ConfigError, match=match):
            ClaimFusion.from_dict(bad)
    with pytest.raises(ConfigError, match="at least one reference"):
        ClaimFusion("p", 1.0).fuse(svm, np.zeros((2, 0)))


def test_the_fusion_is_stored_with_the_model(models: tuple[Path, Path, Path]) -> None:
    signet, pairs, plain = models
    f = model_fusion(signet)
    assert f.pairs_model == str(pairs) and f.weight == 0.25 and f.combine == "max" and f.threshold == 0.1
    with pytest.raises(ConfigError, match="stores no claims fusion"):
        model_fusion(plain)
    with pytest.raises(ConfigError, match="checkpoint or shipped name"):
        model_fusion(None)




def test_fused_gallery_claims_are_svm_plus_weighted_pair_scores(tmp_path: Path, cedar: Path, models: tuple[Path, Path, Path]) -> None:
    signet, pairs_dir, plain = models
    g = Gallery.create(tmp_path / "g.db", str(signet), keep_images=True)
    refs = {w: _genuine(cedar, w, range(1, 4)) for w in (1, 2, 3)}
    for w, paths in refs.items():
        g.enroll(str(w), paths)
    questioned = [cedar / "full_org" / "original_1_10.png", cedar / "full_forg" / "forgeries_1_1.png"]
    scorer = WriterSVMClaims(g, SVMClaimConfig(augment=0))
    svm = np.array([c.score for c in scorer.verify("1", questioned)])
    got = scorer.verify("1", questioned, fused=True)
    pairs = load_model(pairs_dir)
    expected = svm + 0.25 * pair_scores(pairs, embed_images(pairs, questioned), embed_images(pairs, refs[1])).max(1)
    np.testing.assert_allclose([c.score for c in got], expected, rtol=1e-5, atol=1e-6)
    assert all(c.threshold == 0.1 and c.rule == "fused" and c.to_dict()["scoring"] == "fused" for c in got)
    assert [c.same for c in got] == (expected >= 0.1).tolist()
    assert scorer.verify("1", questioned[:1], fused=True, threshold=1e9)[0].same is False
    # the library call behind the CLI and the service (the default config: 10 copies)
    one = verify_claim_scored(g, "1", questioned[0], "fused")
    assert one.rule == "fused" and np.isfinite(one.score)
    g.close()
    with Gallery.create(tmp_path / "plain.db", str(plain), keep_images=True) as p:
        p.enroll("1", refs[1])
        p.enroll("2", refs[2])
        with pytest.raises(ConfigError, match="stores no claims fusion"):
            verify_claim_scored(p, "1", questioned[0], "fused")


def test_fused_cedar_claims_protocol(cedar: Path, models: tuple[Path, Path, Path]) -> None:
    from twinshot.evaluation.claims import cedar_writer_dependent

    signet, _, plain = models
    kw = dict(references=(1, 2), pool=2, augment=0, cohort="3")
    fused = cedar_writer_dependent(load_model(signet), cedar, "1-2", scoring="fused", **kw)
    svm = cedar_writer_dependent(load_model(signet), cedar, "1-2", scoring="svm", **kw)
    for f, s in zip(fused, svm):
        assert f.scoring == "fused" and f.fusion is not None and f.fusion["weight"] == 0.25 and s.fusion is None
        assert f.to_dict()["fusion"]["combine"] == "max" and f.cohort == s.cohort == [3]
        assert f.rates["skilled"].n_impostor == s.rates["skilled"].n_impostor == 2 * 24
    with pytest.raises(ConfigError, match="stores no claims fusion"):
        cedar_writer_dependent(load_model(plain), cedar, "1-2", scoring="fused", **kw)


def test_the_shipped_cedar_model_stores_its_fusion() -> None:
    f = model_fusion("signatures-cedar")
    assert f.pairs_model == "signatures-cedar-pairs" and 0.0 < f.weight < 1.0 and f.combine == "max"
    assert "splits 20, 23" in f.fitted_on  # fitted without split 0's held-out writers (docs/applications.md, run 23)
