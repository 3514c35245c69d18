"""The open-set protocol: draws, scores and metrics on small hand-checked embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from tests.evaluation.models import pixel_model, small_model
from twinshot.errors import ConfigError, DataError
from twinshot.evaluation.openset import (
    DET_FPIRS,
    DrawScores,
    OpenSetDraw,
    draw_metrics,
    draw_open_set,
    evaluate_open_set,
    evaluate_open_set_embeddings,
    identity_scores,
    parse_rates,
    score_draw,
)
from twinshot.evaluation.tta import embed_tta, has_builtin_shifts, shift_views


def neg_l1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise ``-|a - b|`` summed over dimensions (higher is more alike)."""
    return -np.abs(a[:, None, :] - b[None, :, :]).sum(2)


def test_identity_scores_max_and_mean() -> None:
    logits = np.array([[1.0, 3.0, 2.0, 0.0], [5.0, -1.0, 0.0, 4.0]])
    ident = np.array([1, 0, 1, 0])  # identity 0: columns 1, 3; identity 1: columns 0, 2
    assert identity_scores(logits, ident, 2, "max").tolist() == [[3.0, 2.0], [4.0, 5.0]]
    assert identity_scores(logits, ident, 2, "mean").tolist() == [[1.5, 1.5], [1.5, 2.5]]
    with pytest.raises(ConfigError, match="rule"):
        identity_scores(logits, ident, 2, "median")


def test_draw_metrics_hand_checked() -> None:
    # four mated searches (best 5, 4, 3, 2; the one at 3 ranked its identity second), two strangers (4.5, 1)
    scores = DrawScores(
        best=np.array([5.0, 4.0, 3.0, 2.0, 4.5, 1.0]),
        predicted=np.array([0, 1, 0, 3, 1, 2]),
        true_rank=np.array([0, 0, 1, 0, -1, -1]),
    )
    m = draw_metrics(scores, (0.5, 0.1), threshold=2.5)
    assert (m["n_mated"], m["n_nonmated"]) == (4, 2)
    assert m["rank1"] == 0.75 and m["rank5"] == 1.0
    # FPIR 0.5: one stranger may pass, so the threshold sits just above 1: hits 5, 4, 2 pass
    assert m["dir_at_fpir"]["0.5"] == 0.75 and m["fpir_achieved"]["0.5"] == 0.5
    assert 1.0 < m["threshold_at_fpir"]["0.5"] < 1.0 + 1e-9
    assert m["accuracy_at_fpir"]["0.5"] == pytest.approx((0.75 + 0.5) / 2)
    # FPIR 0.1: no stranger may pass, threshold just above 4.5: only the hit at 5
    assert m["dir_at_fpir"]["0.1"] == 0.25 and m["fpir_achieved"]["0.1"] == 0.0
    assert m["best_accuracy"] == pytest.approx(0.625)
    # fixed threshold 2.5: hits 5 and 4 accepted, the misranked 3 accepted as the wrong one, stranger 4.5 in
    assert m["dir_at_threshold"] == 0.5 and m["fpir_at_threshold"] == 0.5
    assert m["misidentified_at_threshold"] == 0.25
    assert len(m["det_fnir"]) == len(DET_FPIRS) and m["det_fnir"][-1] == pytest.approx(0.25)


def test_score_draw_hand_checked() -> None:
    # 1-d embeddings: classes 0, 1, 2 near 0, 10, 20; images 6 and 7 are strangers
    e = np.array([[0.0], [0.1], [10.0], [10.2], [20.0], [14.0], [5.0], [30.0]], dtype=np.float32)
    draw = OpenSetDraw(
        enrolled=np.array([0, 1, 2]), ref_index=np.array([0, 2, 4]), ref_identity=np.array([0, 1, 2]),
        query_index=np.array([1, 3, 5, 6, 7]), query_identity=np.array([0, 1, 2, -1, -1]),
    )
    s = score_draw(e, draw, neg_l1)
    np.testing.assert_allclose(s.best, [-0.1, -0.2, -4.0, -5.0, -10.0], atol=1e-5)
    assert s.predicted.tolist() == [0, 1, 1, 0, 2]  # the stranger at 5 ties 0 and 1: the first wins
    assert s.true_rank.tolist() == [0, 0, 1, -1, -1]
    assert s.mated.tolist() == [True, True, True, False, False]
    small = score_draw(e, draw, neg_l1, block=2)  # blocks give the same answer
    np.testing.assert_array_equal(small.true_rank, s.true_rank)


def _groups_data(per_class: int = 4) -> tuple[np.ndarray, np.ndarray]:
    class_groups = np.array([0] * 5 + [1] * 3 + [2] * 4)  # 12 classes in 3 groups
    labels = np.repeat(np.arange(12), per_class)
    return labels, class_groups


@pytest.mark.parametrize("groups", ["any", "same", "disjoint"])
def test_draw_open_set_structure(groups: str) -> None:
    labels, class_groups = _groups_data()
    d = draw_open_set(labels, class_groups, enrolled=4, references=2, groups=groups, rng=np.random.default_rng(1))
    assert d.enrolled.size == 4 and len(set(d.enrolled.tolist())) == 4
    assert d.ref_index.size == 8 and np.bincount(d.ref_identity).tolist() == [2, 2, 2, 2]
    assert set(d.ref_index.tolist()).isdisjoint(d.query_index.tolist())  # references are never queries
    assert (labels[d.ref_index] == d.enrolled[d.ref_identity]).all()
    mated = d.query_identity >= 0
    assert (labels[d.query_index[mated]] == d.enrolled[d.query_identity[mated]]).all()
    assert mated.sum() == 4 * 2  # every other image of each enrolled class
    stranger_classes = set(labels[d.query_index[~mated]].tolist())
    assert stranger_classes.isdisjoint(d.enrolled.tolist())
    enrolled_groups = set(class_groups[d.enrolled].tolist())
    stranger_groups = {int(class_groups[c]) for c in stranger_classes}
    if groups == "same":
        assert stranger_groups <= enrolled_groups and len(stranger_classes) == 8
    elif groups == "disjoint":
        assert stranger_groups.isdisjoint(enrolled_groups)
    else:
        assert len(stranger_classes) == 8


def test_draw_same_groups_proportional_and_queries_cap() -> None:
    labels, class_groups = _groups_data(per_class=6)
    d = draw_open_set(labels, class_groups, enrolled=6, queries=2, groups="same", rng=np.random.default_rng(0))
    # 6 of 12 classes in groups of 5, 3 and 4: 2.5, 1.5, 2 -> 3, 1, 2 or 2, 2, 2 (largest remainders)
    per_group = np.bincount(class_groups[d.enrolled], minlength=3)
    assert per_group.sum() == 6 and (per_group >= 1).all() and (per_group <= np.array([4, 2, 3])).all()
    assert np.bincount(labels[d.query_index], minlength=12).tolist() == [2] * 12


def test_draw_errors() -> None:
    labels, class_groups = _groups_data()
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="strangers"):
        draw_open_set(labels, class_groups, enrolled=12, rng=rng)
    with pytest.raises(DataError, match="at most 9"):
        draw_open_set(labels, class_groups, enrolled=10, groups="same", rng=rng)
    with pytest.raises(DataError, match="whole groups"):
        draw_open_set(labels, class_groups, enrolled=10, groups="disjoint", rng=rng)
    with pytest.raises(DataError, match="cannot enroll 3"):
        draw_open_set(labels, class_groups, enrolled=3, references=4, rng=rng)  # 4 images: no query left
    with pytest.raises(ConfigError, match="group mode"):
        draw_open_set(labels, class_groups, enrolled=3, groups="nearby", rng=rng)


def test_evaluate_embeddings_separable_and_seeded() -> None:
    labels, class_groups = _groups_data()
    e = (labels[:, None] * 100.0 + np.arange(labels.size)[:, None] % 4).astype(np.float32)  # classes 100 apart
    r = evaluate_open_set_embeddings(e, labels, class_groups, neg_l1, enrolled=5, seeds=3, seed=7, fpirs=(0.01, 0.25))
    out = r.to_dict()
    assert out["rank1"] == {"mean": 1.0, "ci95": 0.0}
    assert out["dir_at_fpir"]["0.25"]["mean"] == 1.0 and out["fpir_achieved"]["0.01"]["mean"] == 0.0
    assert out["n_mated"] == 15 and out["n_nonmated"] == 28 and len(r.per_seed) == 3
    assert out["det"]["fpir"] == list(DET_FPIRS)
    again = evaluate_open_set_embeddings(e, labels, class_groups, neg_l1, enrolled=5, seeds=3, seed=7, fpirs=(0.01, 0.25))
    assert again.per_seed == r.per_seed
    one = evaluate_open_set_embeddings(e, labels, class_groups, neg_l1, enrolled=5, seeds=1, seed=7)
    assert one.to_dict()["rank1"]["ci95"] is None  # no interval from one draw
    with pytest.raises(ConfigError, match="FPIR"):
        evaluate_open_set_embeddings(e, labels, class_groups, neg_l1, enrolled=5, fpirs=(1.5,))


def test_parse_rates() -> None:
    assert parse_rates("0.01,0.1") == (0.01, 0.1)
    with pytest.raises(ConfigError, match="--fpir"):
        parse_rates("0.01,lots")
    with pytest.raises(ConfigError, match="--fpir"):
        parse_rates("0")


def test_shift_views() -> None:
    x = np.arange(2 * 1 * 3 * 3, dtype=np.uint8).reshape(2, 1, 3, 3)
    views = shift_views(x)
    assert len(views) == 5 and all(v.shape == x.shape for v in views)
    np.testing.assert_array_equal(views[0], x)
    np.testing.assert_array_equal(views[1][0, 0], [[0, 0, 1], [3, 3, 4], [6, 6, 7]])  # content moved right
    assert len(shift_views(x, flip=True)) == 10
    np.testing.assert_array_equal(shift_views(x, flip=True)[5], x[..., ::-1])


def test_embed_tta_and_evaluate_open_set(image_folder) -> None:
    from twinshot.data import load_dataset

    model = small_model("euclidean")
    data = load_dataset(image_folder, model.preprocessing)
    plain = embed_tta(model, data.images.numpy())
    shifted = embed_tta(model, data.images.numpy(), tta="shifts")
    assert plain.shape == shifted.shape and not np.allclose(plain, shifted)
    with pytest.raises(ConfigError, match="test-time"):
        embed_tta(model, data.images.numpy(), tta="zoom")
    # raw pixels on the test folder's drawings: every image of a class is one drawing, shifted
    r = evaluate_open_set(pixel_model(), load_dataset(image_folder, pixel_model().preprocessing), enrolled=4, seeds=2, groups="same")
    assert r.to_dict()["n_classes"] == 8 and r.to_dict()["tta"] == "none"


def test_embed_tta_refuses_shifts_on_a_model_that_shifts_itself(image_folder) -> None:
    from twinshot.data import load_dataset
    from twinshot.gallery.embedding import as_embedder

    model = small_model("euclidean", test_shifts=True)
    images = load_dataset(image_folder, model.preprocessing).images.numpy()[:6]
    assert has_builtin_shifts(model) and has_builtin_shifts(as_embedder(model)) and not has_builtin_shifts(small_model())
    assert has_builtin_shifts(type("Exported", (), {"metadata": {"spec": {"encoder_params": {"test_shifts": True}}}})())
    for tta in ("shifts", "shifts+flip"):
        with pytest.raises(ConfigError, match="already averages its 1-pixel shifts"):
            embed_tta(model, images, tta=tta)
    # its own averaging is what tta "shifts" gives the same weights without the flag
    plain = small_model("euclidean")
    plain.load_state_dict(model.state_dict())
    np.testing.assert_allclose(embed_tta(model, images), embed_tta(plain, images, tta="shifts"), atol=1e-5)
