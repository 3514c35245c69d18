"""Writer-dependent CEDAR verification: claims against each writer's enrolled references,
the genuine / skilled / random counts of the protocol, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinshot.data.images import Preprocessing
from twinshot.errors import ConfigError
from twinshot.evaluation.claims import cedar_writer_dependent
from twinshot.models import ModelSpec, build_model, save_model

from tests.data.datasets.test_cedar import fake_cedar


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import torch

    root = tmp_path_factory.mktemp("claims")
    torch.manual_seed(0)
    pre = Preprocessing(size=(24, 36), invert=True, keep_aspect=True)
    model = build_model(ModelSpec("signet", {"input_width": 36, "widths": [4, 8, 8], "grid": [1, 2], "hidden": 8, "embedding_dim": 8}, "euclidean", {}, pre))
    return fake_cedar(root / "cedar", writers=3, per_writer=6), save_model(model, root / "model")


def test_protocol_counts_and_rates(setup: tuple[Path, Path]) -> None:
    from twinshot.models import load_model

    cedar, model_dir = setup
    results = cedar_writer_dependent(load_model(model_dir), cedar, "1-3", references=(1, 3), pool=3)
    assert [r.references for r in results] == [1, 3] and results[0].writers == [1, 2, 3]
    for r in results:
        skilled, random = r.rates["skilled"], r.rates["random"]
        assert skilled.n_genuine == random.n_genuine == 3 * 3  # 6 genuine - pool of 3
        assert skilled.n_impostor == 3 * 6 and random.n_impostor == 3 * 2 * 3
        assert 0.0 <= skilled.eer <= 1.0 and 0.0 <= skilled.frr_at_far["1e-2"] <= 1.0
    with pytest.raises(ConfigError, match="references must be in 1..3"):
        cedar_writer_dependent(load_model(model_dir), cedar, "1-3", references=(4,), pool=3)


def test_cli(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from twinshot.cli.main import cli

    cedar, model_dir = setup
    # pool is 12 in the CLI: the fake writers have 6 genuine signatures, so that is refused clearly
    assert cli(["evaluate", "cedar-claims", str(model_dir), str(cedar), "--references", "1"]) == 2
    assert "needs more than pool=12" in capsys.readouterr().err
    assert cli(["evaluate", "cedar-claims", str(model_dir), str(cedar), "--references", "x"]) == 2
    assert "--references must be numbers" in capsys.readouterr().err


def test_cli_json_on_real_cedar(setup: tuple[Path, Path], datasets_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from twinshot.cli.main import cli

    if not (datasets_dir / "cedar").is_dir():
        pytest.skip("cedar not found")
    _, model_dir = setup
    assert cli(["evaluate", "cedar-claims", str(model_dir), str(datasets_dir / "cedar"), "--writers", "1-2", "--references", "1,5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["references"] for r in out["results"]] == [1, 5]
    assert out["results"][1]["skilled"]["n_genuine"] == 24 and out["results"][1]["skilled"]["n_impostor"] == 48
