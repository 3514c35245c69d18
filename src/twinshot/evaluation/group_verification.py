"""Within-group verification of a labelled set: the validation metric of training runs
whose groups are writers with their skilled forgeries (CEDAR's ``cedar_writers``).

Genuine pairs: two images of one class that is not negative-only (two genuine signatures
of a writer). Impostor pairs: an image of such a class vs an image of another class of the
same group (a genuine signature vs a skilled forgery of that writer). The score is the
head's logit; the result is the equal error rate over all pairs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from twinshot.data.dataset import LabelledImages
from twinshot.errors import DataError
from twinshot.evaluation import metrics
from twinshot.evaluation.episodes import embed_dataset


@torch.no_grad()
def group_verification_eer(model: Any, data: LabelledImages, negative_only: torch.Tensor | None = None) -> tuple[float, int, int]:
    """``(eer, n_genuine, n_impostor)`` of within-group verification on ``data``.

    Args:
        model: a :class:`twinshot.models.SiameseNetwork`.
        data: the labelled images (e.g. the validation writers).
        negative_only: ``(n_classes,)`` bool, classes that are never references (forgeries).
    """
    e = embed_dataset(model, data.images)
    logits = model.head.pairwise_logits(e, e).float().cpu().numpy()  # (N, N)
    labels = data.labels.numpy()
    groups = data.class_groups[data.labels].numpy()
    neg = np.zeros(data.n_classes, bool) if negative_only is None else np.asarray(negative_only, bool)
    ref = ~neg[labels]
    same_class = labels[:, None] == labels[None, :]
    same_group = groups[:, None] == groups[None, :]
    upper = np.triu(np.ones_like(same_class), 1)
    genuine = same_class & upper & ref[:, None] & ref[None, :]
    impostor = same_group & ~same_class & ref[:, None] & (~ref[None, :] | upper)
    if not genuine.any() or not impostor.any():
        raise DataError("within-group verification needs two images of a class and another class in its group")
    scores = np.concatenate([logits[genuine], logits[impostor]])
    same = np.concatenate([np.ones(int(genuine.sum()), bool), np.zeros(int(impostor.sum()), bool)])
    eer, _ = metrics.equal_error_rate(scores, same)
    return float(eer), int(genuine.sum()), int(impostor.sum())
