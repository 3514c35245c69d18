"""The Siamese network: shared weights, symmetric forward, probabilities, save/load."""

from __future__ import annotations

import json

import pytest
import torch

from twinshot.data import Preprocessing
from twinshot.errors import TwinshotError
from twinshot.models import ModelSpec, build_model, fingerprint, load_model, save_model

SPEC = ModelSpec(
    encoder="compact",
    encoder_params={"widths": [8, 8], "embedding_dim": 16},
    head="euclidean",
    preprocessing=Preprocessing(size=(28, 28), invert=True),
)


def test_branches_share_weights_and_forward_matches_embed() -> None:
    torch.manual_seed(0)
    model = build_model(SPEC).eval()
    x1, x2 = torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)
    logits = model(x1, x2)
    expected = model.head(model.embed(x1), model.embed(x2))
    assert torch.allclose(logits, expected, atol=1e-5)
    assert torch.allclose(model(x1, x2), model(x2, x1), atol=1e-5)  # symmetric
    p = model.similarity(x1, x2)
    assert bool(((p >= 0) & (p <= 1)).all())


def test_embed_images_batches_uint8_input() -> None:
    model = build_model(SPEC)
    images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
    out = model.embed_images(images, batch_size=3)
    ref = model.eval().embed(model.preprocessing.to_float(images))
    assert out.shape == (10, 16) and torch.allclose(out, ref, atol=1e-5)


def test_save_and_load_round_trip(tmp_path) -> None:
    model = build_model(SPEC)
    save_model(model, tmp_path / "ckpt", extra={"note": "x"})
    assert not list((tmp_path / "ckpt").glob("*.tmp"))
    loaded = load_model(tmp_path / "ckpt")
    assert fingerprint(loaded) == fingerprint(model)
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(loaded(x, x.flip(0)), model.eval()(x, x.flip(0)))
    assert load_model(tmp_path / "ckpt" / "model.safetensors").spec == model.spec
    meta = json.loads((tmp_path / "ckpt" / "model.json").read_text())
    assert meta["extra"] == {"note": "x"}


def test_run_directory_resolves_to_best_checkpoint(tmp_path) -> None:
    save_model(build_model(SPEC), tmp_path / "run" / "best")
    assert load_model(tmp_path / "run").spec == SPEC


def test_fingerprint_changes_with_weights_and_preprocessing() -> None:
    torch.manual_seed(0)
    a = build_model(SPEC)
    torch.manual_seed(1)
    b = build_model(SPEC)
    assert fingerprint(a) != fingerprint(b)


def test_unknown_model_reference_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(TwinshotError, match="not found"):
        load_model("no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TwinshotError, match="not a model checkpoint"):
        load_model(tmp_path / "empty")
