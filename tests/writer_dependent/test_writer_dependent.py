"""Writer-dependent classifiers, model-layer features and the HOG baseline, on real CEDAR
signatures where they are present (a few images) and on synthetic arrays otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from twinshot.data.images import Preprocessing, load_image
from twinshot.errors import ConfigError, DataError
from twinshot.models import ModelSpec, build_model
from twinshot.writer_dependent import (
    SVMConfig,
    Standardiser,
    WriterClassifier,
    hog_features,
    image_features,
    writer_scores,
)


def _model(encoder: str = "signet"):
    torch.manual_seed(0)
    pre = Preprocessing(size=(30, 44), invert=True, keep_aspect=True)
    params = {"input_width": 44, "widths": [4, 8, 8], "grid": [1, 2], "hidden": 6, "embedding_dim": 5}
    return build_model(ModelSpec(encoder, params, "euclidean", {}, pre))


def test_hog_shapes_and_orientation() -> None:
    x = torch.zeros(2, 1, 24, 36)
    x[0, 0, :, 10:12] = 1.0  # a vertical stroke: horizontal gradients (bin 0)
    x[1, 0, 10:12, :] = 1.0  # a horizontal stroke: vertical gradients (bin 4 of 9)
    f = hog_features(x, grid=(2, 3), bins=9)
    assert f.shape == (2, 2 * 3 * 10) and f.dtype == np.float32
    cells = f.reshape(2, 2, 3, 10)
    assert cells[0, 0, 0, :9].argmax() == 0 and cells[1, 0, 0, :9].argmax() == 4
    assert cells[0, 0, 0, 9] > 0 and cells[0, 0, 2, 9] == 0  # ink density only where the stroke is
    with pytest.raises(ConfigError, match="does not fit"):
        hog_features(x, grid=(30, 3))
    with pytest.raises(ConfigError, match="expects"):
        hog_features(np.zeros(5))


def test_features_per_layer_on_real_signatures(datasets_dir: Path) -> None:
    cedar = datasets_dir / "cedar"
    if not cedar.is_dir():
        pytest.skip("cedar not found")
    paths = [cedar / "full_org" / f"original_1_{n}.png" for n in (1, 2, 3)]
    model = _model()
    widths = {"embedding": 5, "hidden": 6, "grid": 8 * 1 * 2, "hog": 6 * 9 * 10}
    for layer, width in widths.items():
        f = image_features(model, paths, layer, batch_size=2)
        assert f.shape == (3, width) and np.isfinite(f).all(), layer
    emb = model.embed_images(torch.stack([load_image(p, model.preprocessing) for p in paths]))
    np.testing.assert_allclose(image_features(model, paths, "embedding"), emb.numpy(), rtol=1e-5, atol=1e-6)
    assert model.training  # restored
    aug = image_features(model, paths, "grid", copies=2, seed=1)
    assert aug.shape == (6, 16) and not np.allclose(aug[:3], aug[3:])
    np.testing.assert_allclose(image_features(model, paths, "grid", copies=2, seed=1), aug)  # seeded
    with pytest.raises(ConfigError, match="copies must be >= 0"):
        image_features(model, paths, "grid", copies=-1)
    with pytest.raises(ConfigError, match="unknown feature layer"):
        image_features(model, paths, "conv9")
    with pytest.raises(DataError):
        image_features(model, [cedar / "full_org" / "nope.png"], "grid")


def test_grid_needs_a_signet_like_encoder() -> None:
    torch.manual_seed(0)
    model = build_model(ModelSpec("compact", {"input_size": 28, "widths": [4, 4], "embedding_dim": 8}, "euclidean", {}, Preprocessing(size=(28, 28))))
    with pytest.raises(ConfigError, match="needs an encoder with fully connected layers"):
        image_features(model, [np.zeros((28, 28), np.uint8)], "grid")


def test_svm_separates_a_writer_from_the_cohort() -> None:
    rng = np.random.default_rng(0)
    writer = rng.normal(3.0, 0.3, (5, 10))
    cohort = rng.normal(0.0, 1.0, (80, 10))
    genuine = rng.normal(3.0, 0.3, (20, 10))
    others = rng.normal(0.0, 1.0, (20, 10))
    s = writer_scores(writer, np.concatenate([genuine, others]), cohort)
    assert s.shape == (40,) and s[:20].min() > s[20:].max()
    clf = WriterClassifier(SVMConfig(C=10.0, gamma=0.1), Standardiser.fit(cohort)).fit(writer[:1], cohort)
    assert clf.decision_function(writer[0]).shape == (1,)
    with_extra = writer_scores(writer[:1], genuine, cohort, extra=writer[1:])
    assert with_extra.shape == (20,) and with_extra.mean() > 0
    with pytest.raises(DataError, match="extra positives"):
        WriterClassifier().fit(writer, cohort, np.zeros((2, 3)))


def test_svm_bad_input() -> None:
    with pytest.raises(ConfigError, match="C must be > 0"):
        SVMConfig(C=0)
    with pytest.raises(ConfigError, match="gamma"):
        SVMConfig(gamma="big")
    with pytest.raises(DataError, match="at least two"):
        Standardiser.fit(np.zeros((1, 3)))
    with pytest.raises(DataError, match="differ in width"):
        WriterClassifier().fit(np.zeros((2, 3)), np.ones((5, 4)))
    with pytest.raises(ConfigError, match="fit the writer classifier"):
        WriterClassifier().decision_function(np.zeros((1, 3)))


def test_score_claims_on_real_signatures(datasets_dir: Path) -> None:
    from twinshot.writer_dependent import score_claims

    cedar = datasets_dir / "cedar"
    if not cedar.is_dir():
        pytest.skip("cedar not found")
    org = cedar / "full_org"
    refs = [org / f"original_1_{n}.png" for n in (1, 2, 3)]
    questioned = [org / "original_1_4.png", cedar / "full_forg" / "forgeries_1_1.png"]
    cohort = [org / f"original_{w}_1.png" for w in (2, 3, 4, 5)]
    s = score_claims(_model(), refs, questioned, cohort, layer="hog", augment=0)
    assert not np.allclose(score_claims(_model(), refs, questioned, cohort, layer="hog", augment=2), s)
    assert s.shape == (2,) and np.isfinite(s).all()
    assert score_claims(_model(), refs, [], cohort).shape == (0,)
    with pytest.raises(DataError, match="at least one reference"):
        score_claims(_model(), [], questioned, cohort)
    with pytest.raises(DataError, match="cohort of at least two"):
        score_claims(_model(), refs, questioned, cohort[:1])


def test_grid_features_average_test_views_and_concatenate_ensemble_members() -> None:
    pre = Preprocessing(size=(30, 44), invert=True, keep_aspect=True)
    params = {"input_width": 44, "widths": [4, 8, 8], "grid": [1, 2], "hidden": 6, "embedding_dim": 5, "normalize": True}
    torch.manual_seed(0)
    plain = build_model(ModelSpec("signet", params, "euclidean", {}, pre))
    viewed = build_model(ModelSpec("signet", {**params, "test_views": ["shift:2", "stroke:0.5"]}, "euclidean", {}, pre))
    viewed.load_state_dict(plain.state_dict())
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (30, 44), dtype=np.uint8) for _ in range(3)]
    x = plain.preprocessing.to_float(torch.stack([load_image(im, pre) for im in images]))
    plain.eval()
    with torch.no_grad():
        per_view = [torch.flatten(plain.encoder.pool(plain.encoder.features(v)), 1) for v in viewed.encoder.views(x)]
    np.testing.assert_allclose(image_features(viewed, images, "grid"), torch.stack(per_view).mean(0).numpy(), atol=1e-5)
    np.testing.assert_allclose(image_features(plain, images, "grid"), per_view[0].numpy(), atol=1e-5)
    member = {"encoder": "signet", "input_size": 30, "params": params}
    ens = build_model(ModelSpec("ensemble", {"members": [member, member], "input_width": 44}, "euclidean", {}, pre))
    for m in ens.encoder.members:
        m.encoder.load_state_dict(plain.encoder.state_dict())
    both = image_features(ens, images, "grid")
    one = image_features(plain, images, "grid")
    np.testing.assert_allclose(both, np.concatenate([one, one], 1), atol=1e-5)
    assert image_features(ens, images, "hidden").shape == (3, 12)
