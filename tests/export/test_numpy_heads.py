"""The numpy heads score like the torch heads (to 1e-4), from the sidecar's description."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from twinshot.errors import ConfigError
from twinshot.export import NumpyHead, pairwise_logits, sigmoid
from twinshot.export import numpy_heads
from twinshot.export.exporter import head_to_dict
from twinshot.models import HEADS, EuclideanHead


def _torch_head(name: str, dim: int) -> torch.nn.Module:
    torch.manual_seed(0)
    head = HEADS.build(name, embedding_dim=dim)
    if name != "weighted_l1":
        head.set_logistic(3.0, -1.25)
    else:
        head.set_logistic(0.75, 0.5)
        with torch.no_grad():
            head.beta.fill_(-0.4)
    return head.eval()


def _embeddings(n: int, dim: int, seed: int) -> np.ndarray:
    # Koch-like sigmoid outputs and signed values, well apart from each other
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return np.where(np.arange(dim) % 2 == 0, 1 / (1 + np.exp(-x)), 3 * x).astype(np.float32)


@pytest.mark.parametrize("name", ["cosine", "euclidean", "weighted_l1"])
@pytest.mark.parametrize("dim", [16, 512])
def test_numpy_head_matches_the_torch_head(name: str, dim: int) -> None:
    head = _torch_head(name, dim)
    numpy_head = NumpyHead.from_dict(json.loads(json.dumps(head_to_dict(head, name))))  # through JSON
    a, b = _embeddings(9, dim, 1), _embeddings(7, dim, 2)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    with torch.no_grad():
        expected_pairwise = head.pairwise_logits(ta, tb).numpy()
        expected_rows = head(ta[:7], tb).numpy()
        expected_similarity = head.similarity(ta[:7], tb).numpy()
    got = numpy_head.pairwise_logits(a, b)
    assert got.dtype == np.float32 and got.shape == (9, 7)
    assert np.abs(got - expected_pairwise).max() <= 1e-4
    assert np.abs(pairwise_logits(a, b, head_to_dict(head, name)) - expected_pairwise).max() <= 1e-4
    assert np.abs(numpy_head.logits(a[:7], b) - expected_rows).max() <= 1e-4
    assert np.abs(numpy_head.similarity(a[:7], b) - expected_similarity).max() <= 1e-4
    # the row-wise and pairwise forms agree on the diagonal
    assert np.abs(np.diag(numpy_head.pairwise_logits(a[:7], b)) - numpy_head.logits(a[:7], b)).max() <= 1e-4


def test_euclidean_distance_of_an_embedding_to_itself_is_zero() -> None:
    a = _embeddings(5, 512, 3) * 10
    head = NumpyHead("euclidean", scale=1.0, bias=0.0)
    assert np.abs(np.diag(head.pairwise_similarity(a, a))).max() <= 1e-5


@pytest.mark.parametrize("block", [numpy_heads._BLOCK, 128 * 3])
def test_euclidean_pairwise_is_exact_for_near_identical_embeddings(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # large embeddings a hair apart, where |a|^2 - 2 a.b + |b|^2 cancels: the pairwise
    # distances equal a float64 reference from exact differences, like the torch head's
    monkeypatch.setattr(numpy_heads, "_BLOCK", block)  # rescoring in blocks of 3 pairs
    rng = np.random.default_rng(7)
    a = (1000.0 * rng.standard_normal((6, 128))).astype(np.float32)
    b = np.concatenate([a, a + np.float32(1e-3) * rng.standard_normal((6, 128)).astype(np.float32), 1000.0 * rng.standard_normal((4, 128))]).astype(np.float32)
    ref = np.sqrt(((a.astype(np.float64)[:, None] - b.astype(np.float64)[None]) ** 2).sum(-1))
    head = NumpyHead("euclidean", scale=1.0, bias=0.0)
    got = -head.pairwise_similarity(a, b).astype(np.float64)
    assert np.abs(got - ref).max() <= 1e-6 * ref.max()
    assert np.abs(got[:, 6:12].diagonal() - ref[:, 6:12].diagonal()).max() <= 1e-6  # ~0.01 apart, not 0 nor 0.1
    with torch.no_grad():
        t = -EuclideanHead().pairwise_similarity(torch.from_numpy(a), torch.from_numpy(b)).double().numpy()
    assert np.abs(t - ref).max() <= 1e-6 * ref.max()


def test_weighted_l1_blocks_give_the_same_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    head = NumpyHead.from_dict(head_to_dict(_torch_head("weighted_l1", 32), "weighted_l1"))
    a, b = _embeddings(11, 32, 4), _embeddings(13, 32, 5)
    whole = head.pairwise_logits(a, b)
    monkeypatch.setattr(numpy_heads, "_BLOCK", 40)  # blocks of 1 query x 1 reference
    assert np.allclose(head.pairwise_logits(a, b), whole, atol=1e-6)
    monkeypatch.setattr(numpy_heads, "_BLOCK", 32 * 5)
    assert np.allclose(head.pairwise_logits(a, b), whole, atol=1e-6)


def test_sigmoid_is_stable() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = sigmoid(np.array([-1000.0, -2.0, 0.0, 2.0, 1000.0]))
    assert np.allclose(p, [0.0, 1 / (1 + np.exp(2)), 0.5, 1 / (1 + np.exp(-2)), 1.0])


def test_invalid_heads_are_refused() -> None:
    with pytest.raises(ConfigError, match="cannot be scored without torch; valid: cosine, euclidean, weighted_l1"):
        NumpyHead("arcface")
    with pytest.raises(ConfigError, match="alpha"):
        NumpyHead.from_dict({"name": "weighted_l1"})
    with pytest.raises(ConfigError, match="not a valid head description"):
        NumpyHead.from_dict({"scale": 1.0})
    with pytest.raises(ConfigError, match="cannot be compared"):
        NumpyHead("cosine").pairwise_logits(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ConfigError, match="row by row"):
        NumpyHead("cosine").logits(np.zeros((2, 3)), np.zeros((3, 3)))
