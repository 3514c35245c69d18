"""Small models shared by the export tests (and tests/cli/test_export.py)."""

from __future__ import annotations

import torch

from twinshot.data.images import Preprocessing
from twinshot.models import ModelSpec, SiameseNetwork, build_model


def tiny_model(
    head: str = "euclidean",
    *,
    dim: int | None = 16,
    channels: int = 1,
    size: int = 28,
    invert: bool = True,
    mean: float = 0.0,
    std: float = 1.0,
    normalize: bool = False,
    seed: int = 0,
) -> SiameseNetwork:
    """A small untrained compact encoder (2 blocks of 8) with ``head``, seeded, in eval
    mode, with non-trivial batch-norm statistics and logistic parameters so that an export
    that ignored them would fail the checks."""
    torch.manual_seed(seed)
    spec = ModelSpec(
        encoder="compact",
        encoder_params={"widths": [8, 8], "embedding_dim": dim, "normalize": normalize},
        head=head,
        preprocessing=Preprocessing(size=(size, size), channels=channels, invert=invert, mean=mean, std=std),
    )
    model = build_model(spec)
    with torch.no_grad():
        for m in model.encoder.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    if head != "weighted_l1":
        model.head.set_logistic(2.5, -0.75)
    else:
        model.head.set_logistic(1.5, 0.25)
        with torch.no_grad():
            model.head.beta.fill_(0.3)
    return model.eval()
