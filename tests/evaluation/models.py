"""Small deterministic, training-free models for evaluation tests."""

from __future__ import annotations

import torch

from twinshot.data.images import Preprocessing
from twinshot.models import EuclideanHead, ModelSpec, SiameseNetwork, build_model
from twinshot.models.encoders import Encoder


class PixelEncoder(Encoder):
    """Embeds an image as its flattened pixels: identical images get identical embeddings,
    distinct images distinct ones (nearest neighbour on raw pixels)."""

    def __init__(self, channels: int = 1, size: int = 28) -> None:
        super().__init__()
        self.input_shape = (channels, size, size)
        self.embedding_dim = channels * size * size
        self.anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)  # gives the model a device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1) + self.anchor


def pixel_model(size: int = 28, invert: bool = True) -> SiameseNetwork:
    """Raw-pixel nearest neighbour as a Siamese network (Euclidean head)."""
    return SiameseNetwork(PixelEncoder(1, size), EuclideanHead(), Preprocessing(size=(size, size), invert=invert))


def small_model(head: str = "cosine", seed: int = 0, test_shifts: bool = False) -> SiameseNetwork:
    """An untrained registered model (compact encoder, 16-d), seeded, in eval mode; with
    ``test_shifts`` its encoder averages the 1-pixel shifts (as the shipped ``omniglot``)."""
    spec = ModelSpec(
        encoder="compact",
        encoder_params={"widths": [8, 8], "embedding_dim": 16, **({"test_shifts": True} if test_shifts else {})},
        head=head,
        preprocessing=Preprocessing(size=(28, 28), invert=True),
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_model(spec).eval()
