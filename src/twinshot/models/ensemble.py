"""The ``ensemble`` encoder: several trained encoders, each at its own input size, whose
L2-normalised embeddings are concatenated so that one embedding compares like the mean of
the members' comparisons.

Member ``m`` (weight ``w_m``, weights summing to 1) contributes ``sqrt(w_m) * e_m``; for two
images the dot product of the concatenations is ``sum_m w_m cos_m`` and their squared
Euclidean distance ``sum_m w_m ||e_m - e'_m||^2``, so a Euclidean or cosine head ranks by
the weighted mean of the members' cosines (a score-level ensemble in one vector, so
galleries, exports and the service need nothing new).

The model's preprocessing produces the ensemble's ``input_size`` (the largest member's;
with ``input_width``, a ``input_size`` x ``input_width`` rectangle, e.g. ``signet``
members at 150x220); a member trained at a smaller size gets the image resized inside the
encoder by a fixed linear map per axis that reproduces PIL's bilinear (antialiased)
resampling in float (:func:`resize_matrix`), a matrix product, so exports keep it.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from twinshot.errors import ConfigError
from twinshot.models.encoders import ENCODERS, Encoder


def resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """``(n_out, n_in)`` float32 weights of PIL's ``Image.Resampling.BILINEAR`` along one
    axis (a triangle filter widened by the scale when shrinking, as PIL's ``ImagingResample``
    computes them): ``y = R @ x`` resizes a column of ``n_in`` pixels to ``n_out``."""
    if n_in < 1 or n_out < 1:
        raise ConfigError(f"resize sizes must be >= 1, got {n_in} -> {n_out}")
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    out = torch.zeros((n_out, n_in), dtype=torch.float64)
    for i in range(n_out):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        w = torch.tensor([max(0.0, 1.0 - abs((j - center + 0.5) / filterscale)) for j in range(lo, hi)], dtype=torch.float64)
        if float(w.sum()) > 0:
            out[i, lo:hi] = w / w.sum()
    return out.float()


class _Member(nn.Module):
    """One member: an optional fixed resize to its input size, then its encoder."""

    def __init__(self, encoder: Encoder, in_size: int, in_width: int | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        in_width = in_size if in_width is None else in_width
        height, width = encoder.input_shape[1], encoder.input_shape[2]
        self.resize = (height, width) != (in_size, in_width)
        # not saved: rebuilt from the spec (the sizes), so the weights file holds only weights
        self.register_buffer("rows", resize_matrix(in_size, height), persistent=False)
        self.register_buffer("cols", resize_matrix(in_width, width).t().contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> the member's ``(B, D_m)``."""
        if self.resize:
            x = torch.matmul(torch.matmul(self.rows, x), self.cols)
        return self.encoder(x)


@ENCODERS.register("ensemble")
class EnsembleEncoder(Encoder):
    """Several L2-normalised encoders at their own input sizes, concatenated so that distances are the members' mean.

    Args:
        in_channels: 1 or 3 (every member's).
        input_size: the side (the height, with ``input_width``) the model's preprocessing
            produces; each member's own ``input_size`` (default: this one) must not exceed it.
        input_width: the width the preprocessing produces (default: ``input_size``, square);
            each member's own width (its ``params.input_width``, else its ``input_size``)
            must not exceed it.
        members: one table per member: ``{"encoder": NAME, "input_size": S, "params": {...}}``
            (``params`` as the member's own ``model.encoder_params``). Every member must
            produce L2-normalised embeddings.
        weights: one weight per member (default: equal); normalised to sum to 1.

    Shapes: ``(B, C, input_size, input_width)`` -> ``(B, sum of the members' D)``, unit length.
    """

    def __init__(
        self,
        in_channels: int = 1,
        input_size: int = 28,
        members: Sequence[Mapping[str, Any]] = (),
        weights: Sequence[float] | None = None,
        input_width: int | None = None,
    ) -> None:
        super().__init__()
        width = int(input_size if input_width is None else input_width)
        if len(members) < 1:
            raise ConfigError("the ensemble encoder needs at least one member (encoder_params.members)")
        weights = [1.0] * len(members) if weights is None else [float(w) for w in weights]
        if len(weights) != len(members):
            raise ConfigError(f"ensemble: {len(weights)} weights for {len(members)} members")
        if any(not math.isfinite(w) or w <= 0 for w in weights):
            raise ConfigError(f"ensemble weights must be positive numbers, got {weights}")
        total = sum(weights)
        built = []
        for i, spec in enumerate(members):
            if not isinstance(spec, Mapping) or "encoder" not in spec:
                raise ConfigError(f"ensemble member {i}: expected a table with 'encoder' (and 'input_size', 'params')")
            unknown = set(spec) - {"encoder", "input_size", "params"}
            if unknown:
                raise ConfigError(f"ensemble member {i}: unknown key(s) {', '.join(sorted(unknown))}; valid: encoder, input_size, params")
            if spec["encoder"] == "ensemble":
                raise ConfigError(f"ensemble member {i}: an ensemble cannot be a member")
            size = int(spec.get("input_size", input_size))
            if not 1 <= size <= input_size:
                raise ConfigError(f"ensemble member {i}: input_size {size} must be from 1 to the ensemble's {input_size}")
            params = dict(spec.get("params", {}))
            encoder = ENCODERS.build(str(spec["encoder"]), in_channels=in_channels, input_size=size, **params)
            if not getattr(encoder, "normalized", False):
                raise ConfigError(f"ensemble member {i} ({spec['encoder']}): its embeddings must be L2-normalised (normalize = true)")
            if not 1 <= encoder.input_shape[2] <= width:
                raise ConfigError(f"ensemble member {i}: its input width {encoder.input_shape[2]} must be from 1 to the ensemble's {width} (input_width)")
            built.append(_Member(encoder, input_size, width))
        self.members = nn.ModuleList(built)
        self.register_buffer("gains", torch.tensor([math.sqrt(w / total) for w in weights]), persistent=False)
        self.embedding_dim = sum(m.encoder.embedding_dim for m in self.members)
        self.input_shape = (in_channels, input_size, width)
        self.normalized = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, D)``: ``[sqrt(w_1) e_1, ..., sqrt(w_M) e_M]`` (unit length)."""
        parts = [m(x) * self.gains[i] for i, m in enumerate(self.members)]
        return F.normalize(torch.cat(parts, 1), dim=1)
