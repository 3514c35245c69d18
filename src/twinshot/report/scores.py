"""The numbers behind a report: pair scores, their images, and the embeddings.

Two inputs are supported:

* a labelled **folder** of class folders (:func:`folder_scores`): every image is embedded
  once and every pair of images is scored (genuine: same class; impostor: two classes),
  impostors subsampled (seeded) above ``max_pairs``;
* a **pairs CSV** (:func:`pairs_scores`): the listed pairs; an image's class, for the
  embedding map, is the name of its parent folder.

Scores are head logits: **higher is more alike**.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from twinshot.data.dataset import LabelledImages
from twinshot.errors import DataError
from twinshot.models.siamese import SiameseNetwork


@dataclass(frozen=True)
class ScoredPairs:
    """Scored pairs over a set of images.

    Attributes:
        scores: float64 ``(P,)`` head logits, higher is more alike.
        same: bool ``(P,)``, True for genuine pairs.
        index1, index2: int64 ``(P,)``, the two images of each pair (rows of ``images``).
        images: uint8 ``(N, C, H, W)``, the images at the model's preprocessing.
        embeddings: float32 ``(N, D)``.
        image_labels: int64 ``(N,)``, class of each image (into ``class_names``).
        class_names: the classes.
        names: ``N`` strings naming each image (paths).
        dataset: the labelled folder, when the pairs came from one (for episodes).
    """

    scores: np.ndarray
    same: np.ndarray
    index1: np.ndarray
    index2: np.ndarray
    images: torch.Tensor
    embeddings: np.ndarray
    image_labels: np.ndarray
    class_names: list[str]
    names: list[str]
    dataset: LabelledImages | None = None


@torch.no_grad()
def _score_index_pairs(model: SiameseNetwork, embeddings: torch.Tensor, i1: np.ndarray, i2: np.ndarray, chunk: int = 8192) -> np.ndarray:
    a, b = torch.from_numpy(i1), torch.from_numpy(i2)
    out = [model.head(embeddings[a[k : k + chunk]], embeddings[b[k : k + chunk]]) for k in range(0, len(i1), chunk)]
    return torch.cat(out).double().cpu().numpy() if out else np.zeros(0)


def all_pairs(labels: np.ndarray, *, max_pairs: int = 500_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i1, i2)`` with ``i1 < i2`` over ``N`` labelled images: every genuine
    pair, and every impostor pair or, when there are more than ``max_pairs`` pairs in all,
    a seeded uniform subset of the impostors that fills ``max_pairs``."""
    n = len(labels)
    i1, i2 = np.triu_indices(n, k=1)
    same = labels[i1] == labels[i2]
    if len(i1) > max_pairs:
        gen_idx = np.nonzero(same)[0]
        imp_idx = np.nonzero(~same)[0]
        room = max(1, max_pairs - len(gen_idx))
        g = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(imp_idx), generator=g)[:room].sort().values.numpy()
        keep = np.sort(np.concatenate([gen_idx, imp_idx[pick]]))
        i1, i2 = i1[keep], i2[keep]
    return i1.astype(np.int64), i2.astype(np.int64)


def folder_scores(model: SiameseNetwork, folder: str | os.PathLike, *, max_pairs: int = 500_000, seed: int = 0, progress: bool = False) -> ScoredPairs:
    """Score every pair of images of a labelled folder (or zip) of class folders."""
    from twinshot.data import load_dataset
    from twinshot.evaluation.episodes import embed_dataset

    dataset = load_dataset(Path(folder), model.preprocessing, progress=progress)
    if dataset.n_classes < 2:
        raise DataError(f"{folder}: a report needs at least 2 classes, found {dataset.n_classes}")
    labels = dataset.labels.numpy()
    i1, i2 = all_pairs(labels, max_pairs=max_pairs, seed=seed)
    same = labels[i1] == labels[i2]
    if not same.any():
        raise DataError(f"{folder}: no class has two images, so there are no genuine pairs")
    embeddings = embed_dataset(model, dataset.images)
    scores = _score_index_pairs(model, embeddings, i1, i2)
    return ScoredPairs(
        scores=scores, same=same, index1=i1, index2=i2, images=dataset.images,
        embeddings=embeddings.float().cpu().numpy(), image_labels=labels,
        class_names=list(dataset.class_names), names=list(dataset.paths), dataset=dataset,
    )


def pairs_scores(model: SiameseNetwork, pairs_csv: str | os.PathLike, *, progress: bool = False) -> ScoredPairs:
    """Score the pairs of a ``path1,path2,same`` CSV (each image decoded and embedded once)."""
    from twinshot.data.images import load_image
    from twinshot.evaluation.episodes import embed_dataset
    from twinshot.evaluation.pairs import read_pairs_csv

    pairs = read_pairs_csv(pairs_csv)
    index: dict[str, int] = {}
    for p in pairs:
        for path in (p.path1, p.path2):
            index.setdefault(os.fspath(path), len(index))
    names = list(index)
    images = []
    for name in names:
        try:
            images.append(load_image(name, model.preprocessing))
        except DataError as exc:
            raise DataError(f"{pairs_csv}: {exc}") from None
    images_t = torch.stack(images)
    embeddings = embed_dataset(model, images_t)
    i1 = np.array([index[os.fspath(p.path1)] for p in pairs], dtype=np.int64)
    i2 = np.array([index[os.fspath(p.path2)] for p in pairs], dtype=np.int64)
    same = np.array([p.same for p in pairs], dtype=bool)
    if same.all() or not same.any():
        raise DataError(f"{pairs_csv}: a report needs both genuine (same=true) and impostor (same=false) pairs")
    class_of = [Path(n).parent.name for n in names]
    class_names = sorted(set(class_of))
    cid = {c: i for i, c in enumerate(class_names)}
    return ScoredPairs(
        scores=_score_index_pairs(model, embeddings, i1, i2), same=same, index1=i1, index2=i2,
        images=images_t, embeddings=embeddings.float().cpu().numpy(),
        image_labels=np.array([cid[c] for c in class_of], dtype=np.int64),
        class_names=class_names, names=names,
    )
