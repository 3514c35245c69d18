"""``twinshot evaluate``: JSON output, readable output, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from tests.evaluation.fixtures import make_all_runs, reference_scores, sk_eer, write_pairs
from tests.evaluation.models import small_model
from twinshot.cli.main import cli
from twinshot.data.images import Preprocessing
from twinshot.evaluation import read_pairs_csv
from twinshot.models import ModelSpec, build_model, load_model, save_model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return save_model(small_model("euclidean"), tmp_path / "model")


def _json(capsys) -> dict:
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, out
    return json.loads(lines[0])


def test_episodes_json(model_dir: Path, image_folder: Path, capsys) -> None:
    args = ["evaluate", "episodes", str(model_dir), str(image_folder), "--n-way", "5", "--n-shot", "2",
            "--n-query", "2", "--episodes", "50", "--seed", "3", "--json"]
    assert cli(args) == 0
    out = _json(capsys)
    assert 0.0 <= out["accuracy"] <= 1.0 and out["ci95"] > 0
    assert (out["n_way"], out["n_shot"], out["n_query"], out["episodes"], out["seed"]) == (5, 2, 2, 50, 3)
    assert len(out["accuracies"]) == 50
    assert cli(args) == 0
    assert _json(capsys)["accuracy"] == out["accuracy"]  # seeded


def test_episodes_within_group_and_text(model_dir: Path, image_folder: Path, capsys) -> None:
    args = ["evaluate", "episodes", str(model_dir), str(image_folder), "--n-way", "3", "--episodes", "20", "--within-group"]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "3-way 1-shot accuracy" in out and "within groups" in out


def test_episodes_bad_input(model_dir: Path, image_folder: Path, tmp_path: Path, capsys) -> None:
    assert cli(["evaluate", "episodes", str(model_dir), str(tmp_path / "nope"), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nope" in err and "\n" not in err
    assert cli(["evaluate", "episodes", str(tmp_path / "nomodel"), str(image_folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert "nomodel" in err and "\n" not in err
    assert cli(["evaluate", "episodes", str(model_dir), str(image_folder), "--n-way", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "n_way" in err and "\n" not in err
    # 8 classes of 5 images: 20-way cannot be drawn
    assert cli(["evaluate", "episodes", str(model_dir), str(image_folder), "--n-way", "20"]) == 2
    assert "\n" not in capsys.readouterr().err.strip()


def test_omniglot_runs_cli(tmp_path: Path, capsys) -> None:
    spec = ModelSpec(encoder="compact", encoder_params={"widths": [8, 8]}, head="euclidean",
                     preprocessing=Preprocessing(size=(28, 28), invert=True))
    model_dir = save_model(build_model(spec), tmp_path / "model")
    zpath = make_all_runs(tmp_path / "all_runs.zip", duplicate=True, scrambled={4: 5})
    assert cli(["evaluate", "omniglot-runs", str(model_dir), str(zpath), "--json"]) == 0
    out = _json(capsys)
    assert len(out["runs"]) == 20 and out["runs"][3] == pytest.approx(0.25)
    assert out["error_rate"] == pytest.approx(0.25 / 20)
    assert cli(["evaluate", "omniglot-runs", str(model_dir), str(zpath)]) == 0
    assert "error rate: 1.25%" in capsys.readouterr().out
    assert cli(["evaluate", "omniglot-runs", str(model_dir), str(tmp_path / "all_runs_missing.zip")]) == 2
    err = capsys.readouterr().err.strip()
    assert "all_runs_missing.zip" in err and "\n" not in err


def test_verification_cli_matches_sklearn(model_dir: Path, image_folder: Path, capsys) -> None:
    pairs_csv = write_pairs(image_folder, image_folder / "pairs.csv", n_same=40, n_diff=60, seed=1)
    assert cli(["evaluate", "verification", str(model_dir), "--pairs", str(pairs_csv), "--json"]) == 0
    out = _json(capsys)
    pairs = read_pairs_csv(pairs_csv)
    scores = reference_scores(load_model(model_dir), pairs)
    same = np.array([p.same for p in pairs])
    assert out["auc"] == pytest.approx(roc_auc_score(same, scores), abs=1e-6)
    assert out["eer"] == pytest.approx(sk_eer(scores, same), abs=1e-6)
    fpr, tpr, _ = roc_curve(same, scores, drop_intermediate=False)
    assert out["tar_at_far"]["1e-2"] == pytest.approx(tpr[fpr <= 1e-2].max())
    assert out["tar_at_far"]["1e-3"] == pytest.approx(tpr[fpr <= 1e-3].max())
    assert (out["n_genuine"], out["n_impostor"]) == (40, 60)
    assert cli(["evaluate", "verification", str(model_dir), "--pairs", str(pairs_csv)]) == 0
    text = capsys.readouterr().out
    assert "AUC" in text and "EER" in text and "1e-2" in text


def test_verification_cli_errors(model_dir: Path, tmp_path: Path, capsys) -> None:
    assert cli(["evaluate", "verification", str(model_dir), "--pairs", str(tmp_path / "missing.csv"), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'missing.csv'}: no such pairs file"
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert cli(["evaluate", "verification", str(model_dir), "--pairs", str(bad)]) == 2
    assert "missing column" in capsys.readouterr().err


def test_help_lists_subcommands(capsys) -> None:
    assert cli(["evaluate", "--help"]) == 0
    out = capsys.readouterr().out
    for name in ("episodes", "heldout", "omniglot-runs", "verification"):
        assert name in out


def test_verification_help_points_a_folder_to_report(capsys) -> None:
    # a newcomer with a labelled folder and no pairs CSV
    assert cli(["evaluate", "verification", "--help"]) == 0
    assert "twinshot report MODEL --folder FOLDER" in " ".join(capsys.readouterr().out.split())


def test_heldout_needs_the_runs_config(model_dir: Path, capsys) -> None:
    assert cli(["evaluate", "heldout", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert "no config.toml" in err and "Traceback" not in err


def test_open_set_json_and_text(model_dir: Path, image_folder: Path, capsys) -> None:
    args = ["evaluate", "open-set", str(model_dir), str(image_folder), "--enrolled", "4", "--fpir", "0.1,0.5",
            "--seeds", "3", "--seed", "2", "--same-groups", "--threshold", "0", "--json"]
    assert cli(args) == 0
    out = _json(capsys)
    assert (out["enrolled"], out["groups"], out["seeds"], out["n_classes"]) == (4, "same", 3, 8)
    assert set(out["dir_at_fpir"]) == {"0.1", "0.5"} and 0.0 <= out["rank1"]["mean"] <= 1.0
    assert out["n_mated"] == 16 and out["n_nonmated"] == 20 and "dir_at_threshold" in out
    assert len(out["det"]["fpir"]) == len(out["det"]["fnir"])
    assert cli(args[:-1]) == 0
    text = capsys.readouterr().out
    assert "rank-1" in text and "FPIR 0.1: DIR" in text and "at threshold 0.000" in text


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--enrolled", "8"], "strangers"),
        (["--enrolled", "2", "--fpir", "0.1,x"], "--fpir"),
        (["--enrolled", "2", "--same-groups", "--disjoint-groups"], "at most one"),
        (["--enrolled", "2", "--tta", "zoom"], "test-time"),
    ],
)
def test_open_set_bad_input(model_dir: Path, image_folder: Path, capsys, extra: list[str], message: str) -> None:
    assert cli(["evaluate", "open-set", str(model_dir), str(image_folder), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_open_set_tta_refused_on_a_model_with_test_shifts(tmp_path: Path, image_folder: Path, capsys) -> None:
    shifting = save_model(small_model("euclidean", test_shifts=True), tmp_path / "shifting")
    assert cli(["evaluate", "open-set", str(shifting), str(image_folder), "--enrolled", "2", "--tta", "shifts"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already averages" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_open_set_norm_and_tta(model_dir: Path, image_folder: Path, capsys) -> None:
    args = ["evaluate", "open-set", str(model_dir), str(image_folder / "alphabet0"), "--enrolled", "2", "--seeds", "2",
            "--norm", "asnorm", "--top-k", "5", "--cohort", str(image_folder / "alphabet1"), "--tta", "shifts", "--json"]
    assert cli(args) == 0
    out = _json(capsys)
    assert (out["norm"], out["tta"], out["cohort_images"], out["top_k"]) == ("asnorm", "shifts", 20, 5)
    assert cli(args[:-5] + ["--json"]) == 2  # a normalisation without a cohort
    assert "needs a cohort" in capsys.readouterr().err


def test_exclude_groups(model_dir: Path, image_folder: Path, capsys) -> None:
    base = ["evaluate", "episodes", str(model_dir), str(image_folder), "--n-way", "3", "--episodes", "20", "--json"]
    assert cli([*base, "--exclude-groups", "alphabet1"]) == 0
    out = _json(capsys)
    assert (out["n_classes"], out["n_images"], out["exclude_groups"]) == (4, 20, "alphabet1")
    args = ["evaluate", "open-set", str(model_dir), str(image_folder), "--enrolled", "2", "--seeds", "2",
            "--exclude-groups", "alphabet0", "--json"]
    assert cli(args) == 0
    assert _json(capsys)["n_classes"] == 4
    assert cli([*base, "--exclude-groups", "alphabet0,Latin"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --exclude-groups: no group named 'Latin'") and "\n" not in err
