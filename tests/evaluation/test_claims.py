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


def test_svm_scoring_counts_and_cohort(setup: tuple[Path, Path], tmp_path: Path) -> None:
    from twinshot.errors import DataError
    from twinshot.models import load_model

    cedar, model_dir = setup
    model = load_model(model_dir)
    # writers 1-2 enrolled, writer 3 (not enrolled) is the default cohort
    results = cedar_writer_dependent(model, cedar, "1-2", references=(1, 3), pool=3, scoring="svm", layer="grid")
    for r in results:
        assert r.scoring == "svm" and r.layer == "grid" and r.cohort == [3] and r.to_dict()["scoring"] == "svm"
        assert r.augment == 10 and r.to_dict()["augment"] == 10
        assert r.rates["skilled"].n_genuine == 2 * 3 and r.rates["skilled"].n_impostor == 2 * 6
        assert r.rates["random"].n_impostor == 2 * 3
    hog = cedar_writer_dependent(model, cedar, "1-2", references=(3,), pool=3, scoring="svm", layer="hog", cohort="3", augment=0)
    assert hog[0].layer == "hog" and 0.0 <= hog[0].rates["random"].eer <= 1.0
    # the gallery's own cohort: each writer's SVM against the other enrolled writers' references
    own = cedar_writer_dependent(model, cedar, "1-2", references=(2,), pool=3, scoring="svm", cohort="enrolled", augment=2)
    assert own[0].augment == 2 and own[0].rates["skilled"].n_genuine == 2 * 3 and 0.0 <= own[0].rates["skilled"].eer <= 1.0
    with pytest.raises(ConfigError, match="must not be enrolled"):
        cedar_writer_dependent(model, cedar, "1-2", references=(1,), pool=3, scoring="svm", cohort="2-3")
    with pytest.raises(DataError, match="cohort"):
        cedar_writer_dependent(model, cedar, "1-3", references=(1,), pool=3, scoring="svm")
    with pytest.raises(ConfigError, match="augment must be"):
        cedar_writer_dependent(model, cedar, "1-2", references=(1,), pool=3, scoring="svm", augment=-1)
    with pytest.raises(ConfigError, match="unknown scoring"):
        cedar_writer_dependent(model, cedar, "1-2", references=(1,), pool=3, scoring="knn")


def test_cli_svm_on_real_cedar(setup: tuple[Path, Path], datasets_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from twinshot.cli.main import cli

    if not (datasets_dir / "cedar").is_dir():
        pytest.skip("cedar not found")
    _, model_dir = setup
    args = ["evaluate", "cedar-claims", str(model_dir), str(datasets_dir / "cedar"), "--writers", "1-2", "--references", "5"]
    assert cli(args + ["--scoring", "svm", "--cohort", "3-4", "--augment", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["results"][0]
    assert out["scoring"] == "svm" and out["layer"] == "grid" and out["cohort"] == [3, 4] and out["augment"] == 2
    assert out["skilled"]["n_genuine"] == 24 and out["skilled"]["n_impostor"] == 48
    assert cli(args + ["--scoring", "svm", "--cohort", "3", "--layer", "conv9"]) == 2
    assert "unknown feature layer" in capsys.readouterr().err


def test_svm_with_the_enrolled_cohort(setup: tuple[Path, Path]) -> None:
    """``cohort="enrolled"``: each writer's SVM against the other enrolled writers' R
    references (the gallery's default), no outside writers needed."""
    from twinshot.errors import DataError
    from twinshot.models import load_model

    cedar, model_dir = setup
    model = load_model(model_dir)
    results = cedar_writer_dependent(model, cedar, "1-3", references=(1, 3), pool=3, scoring="svm", cohort="enrolled", augment=2)
    for r in results:
        assert r.cohort == [1, 2, 3] and r.scoring == "svm" and r.augment == 2
        assert r.rates["skilled"].n_genuine == 3 * 3 and r.rates["random"].n_impostor == 3 * 2 * 3
    with pytest.raises(DataError, match="at least two references of other writers"):
        cedar_writer_dependent(model, cedar, "1-2", references=(1,), pool=3, scoring="svm", cohort="enrolled")
