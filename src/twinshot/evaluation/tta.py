"""Test-time augmentation (TTA) of embeddings: embed a few shifted (and, where the domain
allows, mirrored) copies of each image and average them.

Modes (:data:`TTA_MODES`):

* ``"none"``: the image as it is;
* ``"shifts"``: the image and its four 1-pixel shifts (left, right, up, down; the edge
  row/column is repeated into the gap), five views;
* ``"shifts+flip"``: those five and their left-right mirrors, ten views (faces, not
  characters: a mirrored character may be another one).

The views' embeddings are averaged; when the model's embeddings are L2-normalised (every
norm within 1e-3 of 1) the mean is normalised again, so the head sees what it was trained on.

A model whose encoder already averages the shifts (``encoder_params.test_shifts``, e.g. the
shipped ``omniglot``) is refused any mode but ``"none"``: it would average shifts of shifts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twinshot.errors import ConfigError

TTA_MODES = ("none", "shifts", "shifts+flip")


def shift_views(images: np.ndarray, flip: bool = False) -> list[np.ndarray]:
    """The views of uint8 ``(N, C, H, W)`` images: the original, 1-px shifts along each axis
    (edge-replicated), and with ``flip`` the mirror of each. Each view is ``(N, C, H, W)``."""
    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = images.shape[2], images.shape[3]
    views = [images]
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        views.append(np.ascontiguousarray(padded[:, :, 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]))
    if flip:
        views += [np.ascontiguousarray(v[..., ::-1]) for v in views]
    return views


def has_builtin_shifts(model: Any) -> bool:
    """Whether ``model`` (a torch model, a gallery ``Embedder`` wrapping one, or an exported
    model with its sidecar ``metadata``) averages test-time shifts (or the ``signet``
    encoder's ``test_views``) inside its encoder."""
    torch_model = getattr(model, "model", model)
    if hasattr(torch_model, "modules"):
        return any(getattr(m, "test_shifts", False) or getattr(m, "test_views", None) for m in torch_model.modules())
    spec = (getattr(model, "metadata", None) or {}).get("spec") or {}
    params = spec.get("encoder_params") or {}
    members = [m.get("params") or {} for m in params.get("members", []) if isinstance(m, dict)]  # the ensemble encoder
    return any(bool(p.get("test_shifts", False)) or bool(p.get("test_views")) for p in [params, *members])


def embed_tta(model: Any, images: np.ndarray, *, tta: str = "none", batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """Embed uint8 ``(N, C, H, W)`` images with a torch model or gallery ``Embedder``,
    averaging the views of ``tta``. Returns float32 ``(N, D)``."""
    from twinshot.gallery.embedding import embed_uint8

    if tta not in TTA_MODES:
        raise ConfigError(f"unknown test-time augmentation {tta!r}; valid: {', '.join(TTA_MODES)}")
    if tta != "none" and has_builtin_shifts(model):
        raise ConfigError(
            f"test-time augmentation {tta!r} on a model whose encoder already averages its 1-pixel shifts "
            f"(encoder_params.test_shifts or test_views) would shift the shifts; use tta 'none' (--tta none)"
        )
    images = np.asarray(images)
    if tta == "none":
        return embed_uint8(model, images, batch_size=batch_size)
    views = shift_views(images, flip=tta == "shifts+flip")
    embeddings = [embed_uint8(model, v, batch_size=batch_size) for v in views]
    mean = np.mean(embeddings, axis=0)
    norms = np.linalg.norm(embeddings[0], axis=1)
    if norms.size and np.all(np.abs(norms - 1.0) < 1e-3):
        mean = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    return mean.astype(np.float32)
