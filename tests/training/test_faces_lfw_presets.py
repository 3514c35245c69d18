"""The LFW face presets (`faces-lfw`: the pretrained encoder fine-tuned; `faces-lfw-scratch`:
a CNN from scratch) run through `twinshot train` on cached chips of a few real LFW people,
and the models they save align camera photos themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import DATASETS
from twinshot.cli.main import cli
from twinshot.data.images import Preprocessing, load_image
from twinshot.faces.resnet import FaceResNet
from twinshot.models import load_model

LFW = DATASETS / "lfw"
PEOPLE = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder", "Ariel_Sharon", "Hugo_Chavez")
TINY = [
    "--epochs", "1", "--steps-per-epoch", "2", "--threads", "1", "--quiet",
    "--set", "data.val=2", "--set", "sampler.n_classes=3", "--set", "sampler.n_per_class=2",
    "--set", "validation.n_way=2", "--set", "validation.episodes=4", "--set", "validation.calibration_pairs=12",
]


@pytest.fixture(scope="module")
def chips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """150x150 chips (as `scripts/lfw_chip_folders.py` caches them) of 3 photos of 5 people."""
    people = [p for p in PEOPLE if len(list((LFW / p).glob("*.jpg"))) >= 3][:5]
    if len(people) < 5:
        pytest.skip("LFW not found")
    pre = Preprocessing(size=(150, 150), channels=3, invert=False, align="face-api")
    root = tmp_path_factory.mktemp("lfw") / "chips"
    from PIL import Image

    for person in people:
        (root / person).mkdir(parents=True)
        for photo in sorted((LFW / person).glob("*.jpg"))[:3]:
            Image.fromarray(load_image(photo, pre).permute(1, 2, 0).numpy()).save(root / person / (photo.stem + ".png"))
    return root


def test_faces_lfw_fine_tunes_only_the_top_and_saves_an_aligning_model(chips: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert cli(["train", "--preset", "faces-lfw", "--data", str(chips), "--out", str(out), *TINY]) == 0, capsys.readouterr().err
    spec = json.loads((out / "best" / "model.json").read_text())["spec"]
    assert spec["encoder"] == "face-resnet" and spec["preprocessing"]["align"] == "face-api"
    model = load_model(out / "last")
    pretrained = FaceResNet()
    assert torch.equal(model.encoder.stem.conv.weight, pretrained.stem.conv.weight)  # frozen trunk
    assert torch.equal(model.encoder.blocks[-2].conv1.conv.weight, pretrained.blocks[-2].conv1.conv.weight)
    assert not torch.equal(model.encoder.fc, pretrained.fc)  # the top trained
    # a raw photo (not a chip) is detected and aligned by the saved model's preprocessing
    photo = sorted((LFW / "Colin_Powell").glob("*.jpg"))[-1]
    assert load_image(photo, model.preprocessing).shape == (3, 150, 150)


def test_faces_lfw_scratch_trains_a_grey_cnn_that_aligns(chips: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", "--preset", "faces-lfw-scratch", "--data", str(chips), "--out", str(out), *TINY,
            "--set", "model.encoder_params={widths = [8, 8], embedding_dim = 16}"]
    assert cli(args) == 0, capsys.readouterr().err
    model = load_model(out / "best")
    assert model.preprocessing.align == "face-api" and model.preprocessing.channels == 1
    photo = sorted((LFW / "Tony_Blair").glob("*.jpg"))[-1]
    assert load_image(photo, model.preprocessing).shape == (1, 64, 64)  # the chip in grey


def test_train_from_freezes_the_layers_before_it() -> None:
    enc = FaceResNet(pretrained=False, train_from="fc")
    assert [n for n, p in enc.named_parameters() if p.requires_grad] == ["fc"]
    enc = FaceResNet(pretrained=False, train_from="conv256_down_out")
    trainable = {n.split(".")[1] for n, p in enc.named_parameters() if p.requires_grad and n != "fc"}
    assert trainable == {"13"}  # the last residual block
    x = torch.rand(2, 3, 150, 150)
    enc(x).sum().backward()
    assert enc.stem.conv.weight.grad is None and enc.blocks[-1].conv1.conv.weight.grad is not None
    from twinshot.errors import ConfigError

    with pytest.raises(ConfigError, match="train_from"):
        FaceResNet(pretrained=False, train_from="conv999")
