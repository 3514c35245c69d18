"""The face-resnet encoder (dlib's ResNet from face-api)."""

from __future__ import annotations

import torch

from twinshot.models import ENCODERS

#: face-api's own descriptor of an all-black 150x150 image (tfjs 4.22 CPU backend, Node 20,
#: scripts/face_api_parity.py): its first five values.
BLACK_FACE_API = [-0.0359, 0.11436209, 0.08405547, -0.01525793, -0.06594681]


def test_matches_face_api_on_a_black_image() -> None:
    torch.set_num_threads(1)
    enc = ENCODERS.build("face-resnet").eval()
    assert enc.embedding_dim == 128 and enc.input_shape == (3, 150, 150)
    with torch.no_grad():
        out = enc(torch.zeros(1, 3, 150, 150))
    assert torch.allclose(out[0, :5], torch.tensor(BLACK_FACE_API), atol=1e-4)


def test_shapes_and_downsampling() -> None:
    enc = ENCODERS.build("face-resnet", pretrained=False)
    assert sum(p.numel() for p in enc.parameters()) == 5_614_592
    x = torch.rand(2, 3, 150, 150)
    assert enc(x).shape == (2, 128)
