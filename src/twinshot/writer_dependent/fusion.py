"""Claims scored by the writer SVM **fused** with a writer-independent pair model.

The writer-dependent SVM (:mod:`twinshot.writer_dependent.classifier`) sees one image at
a time, on the features of a Siamese encoder; a pair model (e.g. ``signatures-cedar-pairs``,
:mod:`twinshot.models.pairs`) compares the questioned image with each reference pixel by
pixel. Their scores are summed with one fixed weight:

    fused = svm + weight * combine(pair scores of the questioned image vs the R references)

with ``combine`` ``"max"`` or ``"mean"`` over the references (docs/applications.md, run 23).

The weight ships **with the SVM's model**: its ``model.json`` ``extra["claims_fusion"]``
names the pair model and holds the weight (and the default threshold), fitted by
``scripts/cedar_claims_fusion_eval.py`` on writers the evaluated ones never meet; nothing
is fitted at query time. :func:`model_fusion` reads it; :func:`pair_scores` scores images.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch

from twinshot.errors import ConfigError

#: The key of a model's ``extra`` that holds its :class:`ClaimFusion`.
FUSION_KEY = "claims_fusion"
#: How the pair scores over a writer's references combine.
COMBINES: tuple[str, ...] = ("max", "mean")


@dataclass(frozen=True)
class ClaimFusion:
    """``svm + weight * combine(pair scores)``; accept at ``>= threshold``.

    Attributes:
        pairs_model: the pair model (a shipped name or a checkpoint path).
        weight: the pair scores' weight (>= 0).
        combine: ``"max"`` or ``"mean"`` over the references.
        threshold: the default decision threshold of the fused score.
        fitted_on: how the weight was chosen (free text, for the record).
    """

    pairs_model: str
    weight: float
    combine: str = "max"
    threshold: float = 0.0
    fitted_on: str = ""

    def __post_init__(self) -> None:
        if not self.pairs_model:
            raise ConfigError("claims fusion: pairs_model must name a pair model")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ConfigError(f"claims fusion: weight must be a finite number >= 0, got {self.weight}")
        if self.combine not in COMBINES:
            raise ConfigError(f"claims fusion: combine must be one of {', '.join(COMBINES)}, got {self.combine!r}")
        if not math.isfinite(self.threshold):
            raise ConfigError(f"claims fusion: threshold must be finite, got {self.threshold}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClaimFusion":
        """From a model's ``extra["claims_fusion"]``."""
        try:
            return cls(str(d["pairs_model"]), float(d["weight"]), str(d.get("combine", "max")),
                       float(d.get("threshold", 0.0)), str(d.get("fitted_on", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"claims fusion: not a valid description ({exc!r}): {d!r}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fuse(self, svm: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        """Fused scores ``(Q,)`` from SVM scores ``(Q,)`` and pair scores ``(Q, R)`` (``R >= 1``)."""
        svm = np.asarray(svm, dtype=np.float64)
        pairs = np.asarray(pairs, dtype=np.float64).reshape(len(svm), -1)
        if pairs.shape[1] == 0:
            raise ConfigError("claims fusion needs at least one reference's pair score")
        combined = pairs.max(1) if self.combine == "max" else pairs.mean(1)
        return svm + self.weight * combined


def model_fusion(ref: str | os.PathLike | None) -> ClaimFusion:
    """The :class:`ClaimFusion` stored with the model ``ref`` (its ``extra["claims_fusion"]``).

    Raises:
        ConfigError: when the model stores none (one line, naming the model).
    """
    from twinshot.models.io import model_metadata

    if not ref:
        raise ConfigError("fused scoring needs the model's checkpoint or shipped name (it stores the fusion)")
    d = model_metadata(ref).get(FUSION_KEY)
    if not isinstance(d, dict):
        raise ConfigError(
            f"model {ref} stores no claims fusion (extra.{FUSION_KEY}: a pair model and its weight); "
            f"fused scoring needs one, e.g. the shipped signatures-cedar"
        )
    return ClaimFusion.from_dict(d)


def load_pairs_model(fusion: ClaimFusion) -> Any:
    """The fusion's pair model, in eval mode (a :class:`twinshot.models.SiameseNetwork`)."""
    from twinshot.models.io import load_model

    return load_model(fusion.pairs_model).eval()


@torch.no_grad()
def pair_scores(pairs_model: Any, questioned: torch.Tensor, references: torch.Tensor) -> np.ndarray:
    """Pair scores ``(Q, R)`` of questioned embeddings ``(Q, D)`` vs reference embeddings
    ``(R, D)`` of ``pairs_model`` (its head's similarity; higher is more alike)."""
    return pairs_model.head.pairwise_similarity(questioned, references).cpu().numpy().astype(np.float64)


def embed_images(pairs_model: Any, images: Sequence[Any], batch_size: int = 64) -> torch.Tensor:
    """``pairs_model``'s embeddings ``(N, D)`` of images (paths, bytes, arrays)."""
    from twinshot.evaluation.verification import embed_sources

    return embed_sources(pairs_model, list(images), batch_size=batch_size).cpu()
