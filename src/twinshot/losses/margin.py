"""Additive-margin softmax losses over all training classes: ArcFace, CosFace, normalised softmax.

Each holds a learnable weight ``W (D, C)``, one column per training class (rotated copies
of Omniglot classes count as classes of their own). With ``cos_ic`` the cosine between
embedding ``i`` and column ``c`` and ``y_i`` its class::

    normalised softmax (Zhai & Wu 2018):  logit_ic = cos_ic / temperature
    CosFace (Wang et al. 2018):          logit_ic = scale * (cos_ic - margin [c = y_i])
    ArcFace (Deng et al. 2019):          logit_ic = scale * cos(theta_ic + margin [c = y_i])
    loss = mean_i cross_entropy(logit_i, y_i)

ArcFace's margin is in **degrees** (28.6 = 0.5 rad, as in pytorch-metric-learning); where
``theta + margin`` would pass 180 degrees the target logit is ``cos(theta) - margin_rad *
sin(margin_rad)`` so the loss keeps decreasing with the angle. The values and gradients
match pytorch-metric-learning's ``ArcFaceLoss``, ``CosFaceLoss`` and
``NormalizedSoftmaxLoss`` (checked in the tests).

The class count and embedding size are usually known only once the data is loaded:
the trainer calls :meth:`MarginSoftmaxLoss.bind` and puts ``W`` in the optimiser. These
losses take ``"labelled"`` batches: ``loss(embeddings (B, D), labels (B,)) -> ()``.
Only the encoder is kept after training; ``W`` is a training device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from twinshot.errors import ConfigError, DataError
from twinshot.losses.base import LOSSES, Loss


class MarginSoftmaxLoss(Loss):
    """Base of the class-weight softmax losses: holds ``W`` and the checks."""

    batch_kind = "labelled"

    def __init__(
        self, n_classes: int | None = None, embedding_dim: int | None = None, scale: float = 64.0, lr_multiplier: float = 1.0
    ) -> None:
        super().__init__()
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigError(f"{type(self).__name__} scale must be > 0, got {scale}")
        if not (math.isfinite(lr_multiplier) and lr_multiplier > 0):
            raise ConfigError(f"{type(self).__name__} lr_multiplier must be > 0, got {lr_multiplier}")
        self.scale = float(scale)
        #: the class weights learn at ``optimizer.lr * lr_multiplier`` (each is seen rarely)
        self.lr_multiplier = float(lr_multiplier)
        self.W: nn.Parameter | None = None
        self.n_classes = 0
        if n_classes is not None or embedding_dim is not None:
            if n_classes is None or embedding_dim is None:
                raise ConfigError("give both n_classes and embedding_dim, or neither (the trainer binds them)")
            self.bind(n_classes, embedding_dim)

    def bind(self, n_classes: int, embedding_dim: int) -> None:
        """Create ``W (embedding_dim, n_classes)`` (normal init); a no-op when already of that shape."""
        if n_classes < 2 or embedding_dim < 1:
            raise ConfigError(f"{type(self).__name__} needs >= 2 classes and a dimension >= 1, got {n_classes}, {embedding_dim}")
        if self.W is not None and tuple(self.W.shape) == (embedding_dim, n_classes):
            return
        self.W = nn.Parameter(torch.empty(embedding_dim, n_classes))
        nn.init.normal_(self.W)
        self.n_classes = int(n_classes)

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` cosines between the embeddings and the class weights."""
        if self.W is None:
            raise ConfigError(f"{type(self).__name__} is not bound to the training classes yet (call bind)")
        e = self.check_embeddings("embeddings", embeddings, dim=self.W.shape[0])
        w = self.W.to(e.dtype)
        return F.normalize(e, dim=1) @ F.normalize(w, dim=0)

    def _labels(self, labels: torch.Tensor, n: int) -> torch.Tensor:
        labels = self.check_labels(labels, n)
        if bool(((labels < 0) | (labels >= self.n_classes)).any()):
            raise DataError(f"`labels` must be class ids in [0, {self.n_classes})")
        return labels

    def target_logits(self, cos_target: torch.Tensor) -> torch.Tensor:
        """The (unscaled) logit of each embedding's own class, from its cosine ``(B,)``."""
        raise NotImplementedError

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` the logits the cross-entropy sees (margin on the true class)."""
        cos = self.cosines(embeddings)
        labels = self._labels(labels, cos.shape[0])
        rows = torch.arange(cos.shape[0], device=cos.device)
        target = self.target_logits(cos[rows, labels])
        mask = F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        return self.scale * (cos + mask * (target - cos[rows, labels])[:, None])

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(embeddings, labels), labels)

    def extra_repr(self) -> str:
        return f"n_classes={self.n_classes}, scale={self.scale}"


@LOSSES.register("cosface")
class CosFaceLoss(MarginSoftmaxLoss):
    """CosFace / AM-softmax: ``scale * (cos - margin)`` for the true class.

    Args:
        margin: the cosine margin (pytorch-metric-learning's default 0.35).
        scale: multiplies every cosine (default 64).
        n_classes, embedding_dim: known up front, or bound by the trainer.
        lr_multiplier: the class weights learn at ``optimizer.lr`` times this.
    """

    def __init__(self, n_classes: int | None = None, embedding_dim: int | None = None, margin: float = 0.35, scale: float = 64.0, lr_multiplier: float = 1.0) -> None:
        super().__init__(n_classes, embedding_dim, scale, lr_multiplier)
        if not (math.isfinite(margin) and 0 <= margin < 2):
            raise ConfigError(f"cosface margin must be in [0, 2), got {margin}")
        self.margin = float(margin)

    def target_logits(self, cos_target: torch.Tensor) -> torch.Tensor:
        return cos_target - self.margin


@LOSSES.register("arcface")
class ArcFaceLoss(MarginSoftmaxLoss):
    """ArcFace: ``scale * cos(theta + margin)`` for the true class (margin in degrees).

    Args:
        margin: the angular margin in degrees (default 28.6, i.e. 0.5 rad).
        scale: multiplies every cosine (default 64).
        n_classes, embedding_dim: known up front, or bound by the trainer.
    """

    def __init__(self, n_classes: int | None = None, embedding_dim: int | None = None, margin: float = 28.6, scale: float = 64.0, lr_multiplier: float = 1.0) -> None:
        super().__init__(n_classes, embedding_dim, scale, lr_multiplier)
        if not (math.isfinite(margin) and 0 <= margin < 90):
            raise ConfigError(f"arcface margin must be in [0, 90) degrees, got {margin}")
        self.margin_degrees = float(margin)
        self.margin = math.radians(margin)

    def target_logits(self, cos_target: torch.Tensor) -> torch.Tensor:
        angles = torch.acos(torch.clamp(cos_target, -1.0, 1.0))
        return torch.where(
            angles <= math.pi - self.margin,
            torch.cos(angles + self.margin),
            torch.cos(angles) - self.margin * math.sin(self.margin),
        )


@LOSSES.register("normalized_softmax")
class NormalizedSoftmaxLoss(MarginSoftmaxLoss):
    """Normalised softmax: ``cos / temperature`` for every class, no margin.

    Args:
        temperature: divides the cosines (default 0.05, i.e. a scale of 20).
        n_classes, embedding_dim: known up front, or bound by the trainer.
    """

    def __init__(self, n_classes: int | None = None, embedding_dim: int | None = None, temperature: float = 0.05, lr_multiplier: float = 1.0) -> None:
        if not (math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"normalized_softmax temperature must be > 0, got {temperature}")
        super().__init__(n_classes, embedding_dim, 1.0 / temperature, lr_multiplier)
        self.temperature = float(temperature)

    def target_logits(self, cos_target: torch.Tensor) -> torch.Tensor:
        return cos_target


def bind_loss(loss: nn.Module, n_classes: int, embedding_dim: int) -> None:
    """Bind a class-weight loss to the training classes (other losses are left alone)."""
    if isinstance(loss, MarginSoftmaxLoss):
        loss.bind(n_classes, embedding_dim)
