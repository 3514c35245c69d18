"""Per-image feature vectors for writer-dependent classifiers, from a trained model.

Layers (``FEATURE_LAYERS``):

* ``"embedding"``: the model's embedding ``(N, D)`` (what a gallery stores);
* ``"grid"``: the encoder's pooled spatial feature map, flattened, the input of its fully
  connected layers (SigNet-like encoders: ``widths[-1] * rows * cols``, 1,440 for the
  ``signatures-cedar`` model). Hafemann et al. (2017) train their writer-dependent SVMs on
  such a layer: it keeps where each stroke lies, which the embedding compresses away;
* ``"hidden"``: the first hidden fully connected layer after its ReLU;
* ``"hog"``: the handcrafted :func:`twinshot.writer_dependent.handcrafted.hog_features` of
  the model-preprocessed image (no network), the baseline.

``grid`` and ``hidden`` need an encoder with an ``fc`` ``nn.Sequential`` (the ``signet``
encoder, or an ``ensemble`` of them: the members' features concatenated); others get a
clear :class:`ConfigError`. An encoder with test-time views (``signet``'s ``test_views``)
runs its ``fc`` on all the views at once; the features are then the mean over the views.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from twinshot.data.augment import KochAffine
from twinshot.data.images import ImageSource, load_image
from twinshot.errors import ConfigError
from twinshot.models.siamese import SiameseNetwork

FEATURE_LAYERS: tuple[str, ...] = ("embedding", "grid", "hidden", "hog")


def _fc_encoders(model: SiameseNetwork, layer: str) -> list[nn.Module]:
    """The encoders whose ``fc`` feeds ``layer``: the model's own, or each member of an
    ``ensemble`` encoder (their features are concatenated, member by member)."""
    members = getattr(model.encoder, "members", None)
    encoders = [m.encoder for m in members] if isinstance(members, nn.ModuleList) else [model.encoder]
    for enc in encoders:
        if not isinstance(getattr(enc, "fc", None), nn.Sequential):
            raise ConfigError(
                f"feature layer {layer!r} needs an encoder with fully connected layers 'fc' (e.g. signet, or an ensemble "
                f"of them); this model's encoder is {type(enc).__name__}"
            )
    return encoders


def _hook_target(encoder: nn.Module, layer: str) -> nn.Module:
    fc = encoder.fc
    if layer == "grid":
        return fc
    relus = [m for m in fc if isinstance(m, nn.ReLU)]
    if not relus:
        raise ConfigError("feature layer 'hidden' needs an encoder with a hidden fully connected layer")
    return relus[0]


#: The distortion of :func:`image_features`'s ``copies``: mild, a writer's own variation.
REFERENCE_AUGMENTATION = KochAffine(rotation=5.0, shear=0.1, scale=(0.9, 1.1), translate=4.0, p=0.8)


@torch.no_grad()
def image_features(
    model: SiameseNetwork,
    sources: Sequence[ImageSource],
    layer: str = "grid",
    *,
    batch_size: int = 64,
    copies: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """Features ``(N, F)`` float32 of ``N`` images (paths, bytes, arrays...) at ``layer``.

    With ``copies > 0``, returns instead the features ``(N * copies, F)`` of ``copies``
    randomly distorted versions of each image (:data:`REFERENCE_AUGMENTATION`, seeded by
    ``seed``; copy ``k`` of every image, then copy ``k + 1``...), e.g. extra positives for
    a writer's classifier.

    Raises:
        ConfigError: for an unknown layer or one the encoder lacks.
        DataError: naming an image that cannot be read.
    """
    if layer not in FEATURE_LAYERS:
        raise ConfigError(f"unknown feature layer {layer!r}; valid: {', '.join(FEATURE_LAYERS)}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if copies < 0:
        raise ConfigError(f"copies must be >= 0, got {copies}")
    from twinshot.writer_dependent.handcrafted import hog_features

    captured: dict[int, torch.Tensor] = {}
    handles = []
    if layer in ("grid", "hidden"):
        for i, enc in enumerate(_fc_encoders(model, layer)):

            def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor, i: int = i) -> None:
                captured[i] = (inputs[0] if layer == "grid" else output).detach().clone()

            handles.append(_hook_target(enc, layer).register_forward_hook(hook))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[np.ndarray] = []
    generator = torch.Generator().manual_seed(int(seed))
    try:
        batches = [
            model.preprocessing.to_float(torch.stack([load_image(s, model.preprocessing) for s in sources[i : i + batch_size]]))
            for i in range(0, len(sources), batch_size)
        ]
        if copies:
            every = torch.cat(batches) if batches else torch.zeros(0)
            batches = [REFERENCE_AUGMENTATION(every, generator) for _ in range(copies)] if len(every) else []
        for xb in batches:
            xf = xb.to(device)
            if layer == "hog":
                out.append(hog_features(xf))
                continue
            e = model.encoder(xf)
            if layer == "embedding":
                out.append(e.float().cpu().numpy())
                continue
            parts = []
            for i in range(len(handles)):
                f = torch.flatten(captured[i], 1)
                if f.shape[0] != xf.shape[0]:  # test-time views: (V * B, F) -> the mean over the V views
                    f = f.reshape(-1, xf.shape[0], f.shape[1]).mean(0)
                parts.append(f)
            out.append(torch.cat(parts, 1).float().cpu().numpy())
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out, 0).astype(np.float32)
