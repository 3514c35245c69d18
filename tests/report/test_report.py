"""The report on a tiny model and a synthetic folder: every file, numbers that agree with
scikit-learn and with the evaluation functions, worst errors that really are errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from twinshot.errors import ConfigError, DataError
from twinshot.report import FILES, all_pairs, build_report, embedding_map, folder_scores


def test_all_files_written(folder_report) -> None:
    out = folder_report.out
    for name in FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*"))  # no temporary leftovers


def test_html_is_self_contained(folder_report) -> None:
    page = folder_report.html.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "ROC" in page and "DET" in page and "Worst false accepts" in page and "Worst false rejects" in page
    srcs = [s.split('"', 1)[0] for s in page.split('src="')[1:]]
    assert len(srcs) >= 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in page and "https://" not in page


def test_numbers_match_references(folder_report, tiny_model: Path, synthetic_folder: Path) -> None:
    from sklearn.metrics import roc_auc_score

    from twinshot.evaluation import evaluate_episodes
    from twinshot.models import load_model

    s = json.loads((folder_report.out / "report.json").read_text())
    assert s == folder_report.summary
    model = load_model(tiny_model)
    data = folder_scores(model, synthetic_folder)
    assert s["verification"]["n_genuine"] == 6 * 10 and s["verification"]["n_impostor"] == 15 * 25
    assert s["verification"]["auc"] == pytest.approx(roc_auc_score(data.same, data.scores), abs=1e-9)
    op = s["operating_point"]
    imp = data.scores[~data.same]
    assert op["far"] == pytest.approx(np.mean(imp >= op["threshold"]))
    assert op["far"] <= 0.05
    assert op["frr"] == pytest.approx(np.mean(data.scores[data.same] < op["threshold"]))
    assert op["far_ci95"][0] <= op["far"] <= op["far_ci95"][1]
    assert op["frr_ci95"][0] <= op["frr"] <= op["frr_ci95"][1]
    ep = s["episodes"]
    ref = evaluate_episodes(model, data.dataset, n_way=6, n_shot=1, n_query=1, episodes=50, seed=0)
    assert ep["n_way"] == 6 and ep["accuracy"] == pytest.approx(ref.accuracy)
    for row in s["worst"]["false_accepts"]:
        assert row["class1"] != row["class2"] and row["score"] >= op["threshold"]
    for row in s["worst"]["false_rejects"]:
        assert row["class1"] == row["class2"] and row["score"] < op["threshold"]
    fa = [r["score"] for r in s["worst"]["false_accepts"]]
    assert fa == sorted(fa, reverse=True) and len(fa) <= 3
    assert len(s["embedding_map"]["points"]) == 30


def test_pairs_mode(tiny_model: Path, synthetic_folder: Path, tmp_path: Path) -> None:
    from sklearn.metrics import roc_auc_score

    from twinshot.evaluation.pairs import read_pairs_csv
    from twinshot.evaluation.verification import pair_scores
    from twinshot.models import load_model

    files = sorted(synthetic_folder.rglob("*.png"))
    rows = ["path1,path2,same"]
    for i, a in enumerate(files):
        for b in files[i + 1 :: 3]:
            rows.append(f"{a},{b},{'true' if a.parent == b.parent else 'false'}")
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    result = build_report(tiny_model, tmp_path / "rep", pairs=csv_path, far=0.1, n_boot=100, worst=2)
    scores, same = pair_scores(load_model(tiny_model), read_pairs_csv(csv_path))
    assert result.summary["verification"]["auc"] == pytest.approx(roc_auc_score(same, scores))
    assert result.summary["episodes"] is None
    assert result.summary["n_classes"] == 6
    assert (tmp_path / "rep" / "report.html").is_file()


def test_bad_inputs(tiny_model: Path, synthetic_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        build_report(tiny_model, tmp_path / "r", folder=synthetic_folder, pairs=tmp_path / "p.csv")
    with pytest.raises(ConfigError, match="exactly one"):
        build_report(tiny_model, tmp_path / "r")
    with pytest.raises(ConfigError, match="--far"):
        build_report(tiny_model, tmp_path / "r", folder=synthetic_folder, far=0)
    with pytest.raises(DataError, match="no such pairs file"):
        build_report(tiny_model, tmp_path / "r", pairs=tmp_path / "missing.csv")
    one_sided = tmp_path / "same.csv"
    files = sorted(synthetic_folder.rglob("*.png"))
    one_sided.write_text(f"path1,path2,same\n{files[0]},{files[1]},true\n")
    with pytest.raises(DataError, match="both genuine"):
        build_report(tiny_model, tmp_path / "r", pairs=one_sided)


def test_all_pairs_subsamples_impostors_only() -> None:
    labels = np.repeat(np.arange(10), 4)
    i1, i2 = all_pairs(labels)
    assert len(i1) == 40 * 39 // 2 and np.all(i1 < i2)
    j1, j2 = all_pairs(labels, max_pairs=100, seed=3)
    same = labels[j1] == labels[j2]
    assert len(j1) == 100 and same.sum() == 10 * 6
    k1, _ = all_pairs(labels, max_pairs=100, seed=3)
    assert np.array_equal(j1, k1)


def test_embedding_map_methods() -> None:
    x = np.random.default_rng(0).normal(size=(30, 8))
    pts, m = embedding_map(x, method="pca")
    assert pts.shape == (30, 2) and m == "pca"
    pts, m = embedding_map(x)
    assert pts.shape == (30, 2) and m == "tsne"
    with pytest.raises(ConfigError, match="auto, pca or tsne"):
        embedding_map(x, method="umap")


def test_open_set_section(tiny_model: Path, synthetic_folder: Path, tmp_path: Path) -> None:
    from twinshot.evaluation.openset import evaluate_open_set
    from twinshot.data import load_dataset
    from twinshot.models import load_model

    result = build_report(tiny_model, tmp_path / "rep", folder=synthetic_folder, far=0.1, episodes=20, n_boot=50,
                          worst=1, open_set=3, map_method="pca")
    o = result.summary["open_set"]
    model = load_model(tiny_model)
    expected = evaluate_open_set(model, load_dataset(synthetic_folder, model.preprocessing), enrolled=3, seeds=5, fpirs=(0.01, 0.1))
    assert o["rank1"] == pytest.approx(expected.to_dict()["rank1"]) and o["enrolled"] == 3
    assert (tmp_path / "rep" / "open_set_det.png").is_file()
    assert str(tmp_path / "rep" / "open_set_det.png") in result.to_dict()["files"]
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "Open set" in page and "DIR at FPIR 0.1" in page
    with pytest.raises(ConfigError, match="--open-set needs --folder"):
        csv = tmp_path / "p.csv"
        files = sorted(synthetic_folder.rglob("*.png"))
        csv.write_text(f"path1,path2,same\n{files[0]},{files[1]},true\n{files[0]},{files[7]},false\n")
        build_report(tiny_model, tmp_path / "r2", pairs=csv, open_set=3)
