"""N-way K-shot episodic evaluation: against a brute-force reference through the network's
forward pass, hand-computed scoring rules, reproducibility, and the real Omniglot set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.evaluation.models import pixel_model
from tests.evaluation.models import small_model
from twinshot.data import EpisodeSampler, LabelledImages, load_dataset
from twinshot.data.images import Preprocessing
from twinshot.errors import ConfigError, DataError
from twinshot.evaluation import EpisodeResult, classify_queries, evaluate_episodes
from twinshot.models import EuclideanHead


@pytest.fixture
def folder_dataset(image_folder: Path) -> LabelledImages:
    """2 groups x 4 classes x 5 images, 28x28."""
    return load_dataset(image_folder, Preprocessing(size=(28, 28), invert=True))


def reference_accuracies(model, dataset, n_way, n_shot, n_query, episodes, seed, within_group=False) -> list[float]:
    """Per-episode accuracy scoring every (query, support) pair with ``model(x1, x2)``,
    the class score being the mean logit over its shots."""
    sampler = EpisodeSampler(dataset.labels, n_way, n_shot, n_query, episodes, seed=seed,
                             class_groups=dataset.class_groups, within_group=within_group)
    x = dataset.preprocessing.to_float(dataset.images)
    out = []
    model.eval()
    with torch.no_grad():
        for ep in sampler:
            q, k = len(ep.query), len(ep.support)
            # every (query, support) pair through the network's forward pass, one batch per episode
            logits = model(x[ep.query.repeat_interleave(k)], x[ep.support.repeat(q)]).view(q, k)
            correct = 0
            for row, ql in zip(logits, ep.query_labels.tolist()):
                per_class = [row[ep.support_labels == c].mean().item() for c in range(n_way)]
                correct += int(int(np.argmax(per_class)) == ql)
            out.append(correct / len(ep.query))
    return out


@pytest.mark.parametrize("head", ["cosine", "euclidean", "weighted_l1"])
@pytest.mark.parametrize("shots", [(5, 1, 1), (4, 3, 2)])
def test_matches_brute_force_forward(folder_dataset: LabelledImages, head: str, shots) -> None:
    n_way, n_shot, n_query = shots
    model = small_model(head)
    result = evaluate_episodes(model, folder_dataset, n_way=n_way, n_shot=n_shot, n_query=n_query, episodes=12, seed=5, batch_size=7)
    ref = reference_accuracies(model, folder_dataset, n_way, n_shot, n_query, 12, 5)
    np.testing.assert_allclose(result.accuracies, ref)
    assert result.accuracy == pytest.approx(np.mean(ref))
    assert result.ci95 == pytest.approx(1.96 * np.std(ref, ddof=1) / np.sqrt(12))
    assert (result.n_way, result.n_shot, result.n_query, result.episodes) == (n_way, n_shot, n_query, 12)


def test_within_group(folder_dataset: LabelledImages) -> None:
    model = small_model()
    result = evaluate_episodes(model, folder_dataset, n_way=3, episodes=10, within_group=True)
    assert result.within_group
    np.testing.assert_allclose(result.accuracies, reference_accuracies(model, folder_dataset, 3, 1, 1, 10, 0, within_group=True))
    with pytest.raises(DataError, match="no group has 5 classes"):
        evaluate_episodes(model, folder_dataset, n_way=5, episodes=10, within_group=True)


def test_mean_logit_rule_for_several_shots() -> None:
    """Class 0's shots are at distance 0 and 10, class 1's both at 4: the nearest single shot
    is class 0's, but the mean logit (euclidean: -5 vs -4) picks class 1."""
    head = EuclideanHead(scale=1.0, bias=0.0)
    query = torch.tensor([[0.0, 0.0]])
    support = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    with torch.no_grad():
        assert classify_queries(head, query, support, labels, 2).tolist() == [1]
        # support not ordered by class: the rule follows the labels
        perm = [2, 0, 3, 1]
        assert classify_queries(head, query, support[perm], labels[perm], 2).tolist() == [1]
        assert classify_queries(head, query, support[:1].repeat(2, 1), torch.tensor([1, 0]), 2).tolist() == [0]  # tie: lowest


def test_perfect_and_reproducible() -> None:
    """Every image of a class identical: raw-pixel matching is always right."""
    g = torch.Generator().manual_seed(0)
    prototypes = torch.randint(0, 256, (12, 1, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.arange(12).repeat_interleave(4)
    data = LabelledImages(prototypes[labels], labels, [f"c{i}" for i in range(12)], torch.zeros(12, dtype=torch.long), [""],
                          [f"{i}.png" for i in range(48)], Preprocessing(size=(28, 28)))
    result = evaluate_episodes(pixel_model(invert=False), data, n_way=10, n_shot=2, n_query=2, episodes=30)
    assert result.accuracy == 1.0 and result.ci95 == 0.0


def test_seeded(folder_dataset: LabelledImages) -> None:
    a = evaluate_episodes(small_model(), folder_dataset, n_way=5, episodes=40, seed=1)
    b = evaluate_episodes(small_model(), folder_dataset, n_way=5, episodes=40, seed=1)
    c = evaluate_episodes(small_model(), folder_dataset, n_way=5, episodes=40, seed=2)
    assert a == b and a.accuracies != c.accuracies


def test_result_to_dict_is_json(folder_dataset: LabelledImages) -> None:
    one = evaluate_episodes(small_model(), folder_dataset, n_way=5, episodes=1)
    assert isinstance(one, EpisodeResult) and np.isnan(one.ci95)
    d = json.loads(json.dumps(one.to_dict(), allow_nan=False))
    assert d["ci95"] is None and d["episodes"] == 1 and len(d["accuracies"]) == 1
    assert set(d) >= {"accuracy", "ci95", "n_way", "n_shot", "n_query", "episodes", "within_group", "accuracies"}


def test_training_mode_is_kept(folder_dataset: LabelledImages) -> None:
    model = small_model().train()
    evaluate_episodes(model, folder_dataset, n_way=5, episodes=3)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_bad_protocol(folder_dataset: LabelledImages) -> None:
    model = small_model()
    for kw, name in (({"n_way": 1}, "n_way"), ({"n_shot": 0}, "n_shot"), ({"n_query": 0}, "n_query"), ({"episodes": 0}, "episodes")):
        with pytest.raises(ConfigError, match=name):
            evaluate_episodes(model, folder_dataset, **{"n_way": 5, **kw})
    with pytest.raises(DataError, match="20-way episodes need 20 classes"):
        evaluate_episodes(model, folder_dataset, n_way=20)
    with pytest.raises(DataError, match="has 5 images"):
        evaluate_episodes(model, folder_dataset, n_way=5, n_shot=3, n_query=3)


def test_real_omniglot_20_way(omniglot_dir: Path) -> None:
    """Raw-pixel nearest neighbour on a real Omniglot background set: far above chance (5%).
    (1000 episodes take ~0.2 s once the images are embedded; timing belongs in bench/.)"""
    data = load_dataset(omniglot_dir / "images_background_small1.zip", Preprocessing(size=(28, 28), invert=True), workers=1)
    model = pixel_model()
    result = evaluate_episodes(model, data, n_way=20, n_shot=1, n_query=1, episodes=1000, seed=0)
    assert 0.2 < result.accuracy < 0.9
    assert 0.0 < result.ci95 < 0.05
    within = evaluate_episodes(model, data, n_way=20, episodes=200, within_group=True)
    assert within.accuracy < result.accuracy + 0.1  # within-alphabet is no easier
