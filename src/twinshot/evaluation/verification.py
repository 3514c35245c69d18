"""Verification: are two images the same class? ROC AUC, EER and TAR at fixed FAR.

The score of a pair is the head's **logit** (higher is more alike; ``sigmoid(logit)`` is
the model's probability of "same"). Each distinct image of a pairs file is decoded and
embedded once, however many pairs it takes part in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from twinshot.data.images import ImageSource, load_image
from twinshot.errors import ConfigError, DataError
from twinshot.evaluation import metrics
from twinshot.evaluation.episodes import embed_dataset, track
from twinshot.evaluation.pairs import Pair, read_pairs_csv
from twinshot.models.siamese import SiameseNetwork

#: False accept rates at which the true accept rate is reported by default.
DEFAULT_FARS: tuple[float, ...] = (1e-2, 1e-3)


def far_key(far: float) -> str:
    """The dictionary key of a false accept rate: ``1e-2`` -> ``"1e-2"``, ``0.005`` -> ``"5e-3"``."""
    mantissa, exponent = f"{far:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


@torch.no_grad()
def embed_sources(
    model: SiameseNetwork,
    sources: Sequence[ImageSource],
    *,
    batch_size: int = 256,
    progress: bool = False,
    names: Sequence[str] | None = None,
) -> torch.Tensor:
    """Decode images (paths, bytes, arrays...) with the model's preprocessing and embed them.

    Decoding and embedding go ``batch_size`` images at a time, so memory stays bounded.

    Args:
        sources: ``N`` images, anything :func:`twinshot.data.load_image` reads.
        names: optional ``N`` names used in error messages instead of the sources.

    Returns:
        float32 ``(N, D)`` on the model's device.

    Raises:
        DataError: naming the image that cannot be read.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if names is not None and len(names) != len(sources):
        raise ValueError("names and sources differ in length")
    chunks = []
    starts = range(0, len(sources), batch_size)
    for i in track(starts, total=len(starts), description="decoding and embedding", enabled=progress):
        batch = []
        for j in range(i, min(i + batch_size, len(sources))):
            try:
                batch.append(load_image(sources[j], model.preprocessing))
            except DataError as exc:
                if names is None:
                    raise
                raise DataError(f"{names[j]}: {exc}") from None
        chunks.append(embed_dataset(model, torch.stack(batch), batch_size=batch_size))
    if not chunks:
        return embed_dataset(model, torch.zeros((0, 1, 1, 1), dtype=torch.uint8))
    return torch.cat(chunks, 0)


@torch.no_grad()
def pair_scores(
    model: SiameseNetwork,
    pairs: Sequence[Pair],
    *,
    batch_size: int = 256,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Score labelled pairs with the model.

    Args:
        pairs: ``P`` pairs (e.g. from :func:`twinshot.evaluation.pairs.read_pairs_csv`).

    Returns:
        ``(scores, same)``: float64 ``(P,)`` head logits (higher is more alike) and bool
        ``(P,)`` labels (True: same class).

    Raises:
        DataError: for no pairs or an unreadable image (named).
    """
    if len(pairs) == 0:
        raise DataError("no pairs to score")
    index: dict[str, int] = {}
    for pair in pairs:
        for path in (pair.path1, pair.path2):
            index.setdefault(os.fspath(path), len(index))
    paths = list(index)
    embeddings = embed_sources(model, paths, batch_size=batch_size, progress=progress)
    device = embeddings.device
    i1 = torch.tensor([index[os.fspath(p.path1)] for p in pairs], device=device)
    i2 = torch.tensor([index[os.fspath(p.path2)] for p in pairs], device=device)
    scores = torch.cat(
        [model.head(embeddings[i1[k : k + batch_size]], embeddings[i2[k : k + batch_size]]) for k in range(0, len(pairs), batch_size)]
    )
    same = np.fromiter((p.same for p in pairs), dtype=bool, count=len(pairs))
    return scores.double().cpu().numpy(), same


@dataclass(frozen=True)
class VerificationResult:
    """Verification metrics of a model on labelled pairs.

    Attributes:
        auc: area under the ROC curve.
        eer: equal error rate (FAR = FRR), a fraction.
        eer_threshold: the logit threshold at the EER (accept ``logit >= threshold``).
        tar_at_far: true accept rate at each false accept rate, keyed ``"1e-2"``, ``"1e-3"``...
            With fewer than ``1 / far`` impostor pairs the FAR cannot be resolved and the
            value is the TAR at FAR = 0.
        n_genuine, n_impostor: the number of same / different pairs.
    """

    auc: float
    eer: float
    eer_threshold: float
    tar_at_far: dict[str, float] = field(default_factory=dict)
    n_genuine: int = 0
    n_impostor: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": "verification",
            "auc": self.auc,
            "eer": self.eer,
            "eer_threshold": self.eer_threshold,
            "tar_at_far": dict(self.tar_at_far),
            "n_genuine": self.n_genuine,
            "n_impostor": self.n_impostor,
        }


def verification_metrics(scores: np.ndarray, same: np.ndarray, *, fars: Sequence[float] = DEFAULT_FARS) -> VerificationResult:
    """Metrics from scores ``(P,)`` (higher is more alike) and bool labels ``(P,)``."""
    same = np.asarray(same, dtype=bool)
    eer, threshold = metrics.equal_error_rate(scores, same)
    return VerificationResult(
        auc=metrics.auc(scores, same),
        eer=eer,
        eer_threshold=threshold,
        tar_at_far={far_key(f): metrics.tar_at_far(scores, same, f) for f in fars},
        n_genuine=int(same.sum()),
        n_impostor=int((~same).sum()),
    )


def evaluate_verification(
    model: SiameseNetwork,
    pairs_csv: str | os.PathLike,
    *,
    batch_size: int = 256,
    progress: bool = False,
    fars: Sequence[float] = DEFAULT_FARS,
) -> VerificationResult:
    """Verification metrics of ``model`` on a pairs CSV (columns ``path1,path2,same``).

    Raises:
        DataError: for a missing or malformed CSV, an unreadable image, or a file with
            only genuine or only impostor pairs.
    """
    pairs = read_pairs_csv(Path(pairs_csv))
    scores, same = pair_scores(model, pairs, batch_size=batch_size, progress=progress)
    if same.all() or not same.any():
        kind = "same" if same.all() else "different"
        raise DataError(f"{pairs_csv}: every pair is {kind}; verification needs both same and different pairs")
    return verification_metrics(scores, same, fars=fars)
