"""The grey-to-colour input map of the face encoder (twinshot.faces.grey)."""

from __future__ import annotations

import pytest
import torch

from twinshot.errors import ConfigError
from twinshot.faces.grey import GreyToColour, is_grey
from twinshot.models import ENCODERS

GAIN, OFFSET = (1.1, 0.95, 0.8), (0.02, -0.01, -0.03)


def _grey_and_colour() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    grey = torch.rand(1, 1, 150, 150, generator=g).expand(-1, 3, -1, -1)
    colour = torch.rand(1, 3, 150, 150, generator=g)
    return torch.cat([grey, colour], 0)


def test_is_grey_per_image() -> None:
    x = _grey_and_colour()
    assert is_grey(x).tolist() == [True, False]
    one_pixel = x[:1].clone()
    one_pixel[0, 2, 5, 7] += 0.01  # a single coloured pixel makes it a colour image
    assert is_grey(one_pixel).tolist() == [False]


def test_maps_grey_images_and_leaves_colour_ones() -> None:
    x = _grey_and_colour()
    out = GreyToColour(GAIN, OFFSET)(x)
    expected = x[0, :1] * torch.tensor(GAIN).view(3, 1, 1) + torch.tensor(OFFSET).view(3, 1, 1)
    assert torch.allclose(out[0], expected)
    assert torch.equal(out[1], x[1])
    assert GreyToColour().identity and not GreyToColour(GAIN, OFFSET).identity
    assert torch.equal(GreyToColour()(x), x)


def test_bad_lengths_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="3 numbers each"):
        GreyToColour((1.0, 1.0), (0.0, 0.0, 0.0))


def test_encoder_applies_the_map_only_to_grey_input() -> None:
    torch.manual_seed(0)
    plain = ENCODERS.build("face-resnet", pretrained=False, mirror=True).eval()
    mapped = ENCODERS.build("face-resnet", pretrained=False, mirror=True, grey_gain=list(GAIN), grey_offset=list(OFFSET)).eval()
    mapped.load_state_dict(plain.state_dict())  # the map has no saved state: same weights
    x = _grey_and_colour()
    with torch.no_grad():
        a, b = plain(x), mapped(x)
        assert torch.allclose(b[1], a[1], atol=1e-6)  # colour: unchanged
        assert not torch.allclose(b[0], a[0], atol=1e-4)  # grey: mapped first
        assert torch.allclose(b[0], plain(GreyToColour(GAIN, OFFSET)(x[:1]))[0], atol=1e-6)
        # the ported net itself (face-api parity) never sees the map
        assert torch.allclose(mapped.descriptor(x), plain.descriptor(x), atol=1e-6)


def test_a_saved_model_keeps_its_map(tmp_path) -> None:
    from twinshot.data.images import Preprocessing
    from twinshot.models import ModelSpec, build_model, load_model, save_model
    from twinshot.models.io import fingerprint

    params = {"pretrained": False, "grey_gain": list(GAIN), "grey_offset": list(OFFSET)}
    spec = ModelSpec(encoder="face-resnet", encoder_params=params, head="cosine", preprocessing=Preprocessing(size=(150, 150), channels=3))
    model = build_model(spec).eval()
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert torch.allclose(loaded.encoder.grey.gain.flatten(), torch.tensor(GAIN))
    assert torch.allclose(loaded.encoder.grey.offset.flatten(), torch.tensor(OFFSET))
    plain = build_model(ModelSpec(**{**spec.__dict__, "encoder_params": {"pretrained": False}}))
    plain.load_state_dict(model.state_dict())
    assert fingerprint(loaded) == fingerprint(model) != fingerprint(plain)  # the map changes the embeddings' cache key
