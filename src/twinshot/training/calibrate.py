"""Platt scaling: fit the head's logistic ``p = sigmoid(scale * s + bias)`` on pairs.

A network trained with a contrastive, triplet or prototypical loss learns embeddings but
not the mapping from its head's similarity ``s`` to a probability; after training, the
trainer fits ``scale`` and ``bias`` on balanced validation pairs by maximum likelihood so
that ``SiameseNetwork.similarity`` gives sensible probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from twinshot.data.dataset import LabelledImages
from twinshot.errors import DataError


@dataclass(frozen=True)
class Calibration:
    """The fitted logistic and how well it fits.

    Attributes:
        scale, bias: ``p = sigmoid(scale * s + bias)``.
        pairs: number of pairs it was fitted on (half of them same-class).
        log_loss: mean negative log-likelihood on those pairs (ln 2 = 0.693 is chance).
    """

    scale: float
    bias: float
    pairs: int
    log_loss: float


def fit_logistic(scores: torch.Tensor, same: torch.Tensor, *, iterations: int = 100, l2: float = 1e-6) -> tuple[float, float]:
    """Maximum-likelihood ``(scale, bias)`` of ``P(same) = sigmoid(scale * score + bias)``.

    Newton's method in float64 on the two parameters (a logistic regression with one
    feature), with a tiny ridge so perfectly separable scores stay finite.

    Args:
        scores: ``(P,)`` similarities, higher is more alike.
        same: ``(P,)`` bool.
    """
    if same.dtype != torch.bool:
        raise DataError("`same` must be a bool tensor (True = same class)")
    if not bool(same.any()) or bool(same.all()):
        raise DataError("calibration needs both same-class and different-class pairs")
    s = scores.detach().double().flatten()
    y = same.double().flatten()
    mu, sd = s.mean(), s.std().clamp_min(1e-12)
    x = torch.stack([(s - mu) / sd, torch.ones_like(s)], 1)  # standardised feature + intercept
    w = torch.zeros(2, dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64) * l2 * len(s)
    for _ in range(iterations):
        p = torch.sigmoid(x @ w)
        grad = x.T @ (p - y) + eye @ w
        hess = (x * (p * (1 - p))[:, None]).T @ x + eye
        delta = torch.linalg.solve(hess, grad)
        w = w - delta
        if float(delta.abs().max()) < 1e-10:
            break
    scale = float(w[0] / sd)
    bias = float(w[1] - w[0] * mu / sd)
    return scale, bias


def sample_pairs(
    dataset: LabelledImages, n_pairs: int, seed: int, *, within_group: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n_pairs`` index pairs of ``dataset``, half same-class and half different-class,
    drawn with a seeded generator; with ``within_group`` the different-class pairs come
    from one group (the harder impostors of within-alphabet recognition).
    Returns ``idx1 (P,)``, ``idx2 (P,)``, ``same (P,)`` bool."""
    g = torch.Generator().manual_seed(seed)
    by_class = [idx for idx in dataset.class_indices() if len(idx) >= 2]
    if not by_class or dataset.n_classes < 2:
        raise DataError("calibration needs at least two classes, one of them with two images")
    n_same = n_pairs // 2
    n_diff = n_pairs - n_same
    idx1, idx2 = [], []
    classes = torch.randint(len(by_class), (n_same,), generator=g)
    for c in classes.tolist():
        members = by_class[c]
        pick = torch.randperm(len(members), generator=g)[:2]
        idx1.append(int(members[pick[0]]))
        idx2.append(int(members[pick[1]]))
    n = len(dataset)
    labels = dataset.labels
    groups = dataset.groups
    if within_group and not any(
        len(torch.unique(labels[groups == gr])) >= 2 for gr in torch.unique(groups).tolist()
    ):
        raise DataError("within-group pairs need a group with at least two classes")
    while len(idx1) < n_same + n_diff:
        a, b = torch.randint(n, (2,), generator=g).tolist()
        if labels[a] != labels[b] and (not within_group or groups[a] == groups[b]):
            idx1.append(a)
            idx2.append(b)
    i1, i2 = torch.tensor(idx1), torch.tensor(idx2)
    return i1, i2, labels[i1] == labels[i2]


@torch.no_grad()
def calibrate_head(model: torch.nn.Module, dataset: LabelledImages, *, pairs: int = 4000, seed: int = 0) -> Calibration:
    """Fit ``model.head``'s logistic on ``pairs`` balanced pairs of ``dataset`` and set it
    (``head.set_logistic``). The dataset must not be the training set."""
    i1, i2, same = sample_pairs(dataset, pairs, seed)
    used = torch.unique(torch.cat([i1, i2]))
    emb = torch.zeros((len(dataset), model.embedding_dim))
    emb[used] = model.embed_images(dataset.images[used])
    scores = model.head.similarity(emb[i1], emb[i2])
    scale, bias = fit_logistic(scores, same)
    model.head.set_logistic(scale, bias)
    logits = scale * scores.double() + bias
    log_loss = float(torch.nn.functional.binary_cross_entropy_with_logits(logits, same.double()))
    return Calibration(scale=scale, bias=bias, pairs=int(len(same)), log_loss=log_loss)
