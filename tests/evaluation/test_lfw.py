"""The LFW protocol: pairs files, threshold from the other folds, standard error, pooled ROC."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.conftest import DATASETS
from twinshot.cli.main import cli
from twinshot.errors import DataError
from twinshot.evaluation import lfw_protocol, read_lfw_pairs
from twinshot.evaluation.lfw import best_threshold, pair_arrays

LFW = DATASETS / "lfw"
#: 2 folds of 2 matched + 2 mismatched pairs over 9 real LFW photos (folds 1-8 people).
TINY_PAIRS = """2\t2
Colin_Powell\t1\t2
Tony_Blair\t1\t2
Aaron_Eckhart\t1\tColin_Powell\t1
Serena_Williams\t1\tTony_Blair\t2
Serena_Williams\t1\t3
Colin_Powell\t3\t4
Tony_Blair\t3\tSerena_Williams\t2
Colin_Powell\t2\tAaron_Eckhart\t1
"""


def test_reads_the_official_format(tmp_path: Path) -> None:
    (tmp_path / "pairs.txt").write_text(TINY_PAIRS)
    folds = read_lfw_pairs(tmp_path / "pairs.txt", "/data/lfw")
    assert [len(f) for f in folds] == [4, 4]
    first = folds[0][0]
    assert first.same and first.path1 == Path("/data/lfw/Colin_Powell/Colin_Powell_0001.jpg")
    assert folds[0][2].path2 == Path("/data/lfw/Colin_Powell/Colin_Powell_0001.jpg") and not folds[0][2].same
    assert [p.same for p in folds[1]] == [True, True, False, False]
    # a one-number header (pairsDevTrain.txt) is one fold; default images: the file's folder
    (tmp_path / "dev.txt").write_text("1\nA\t1\t2\nA\t1\tB\t3\n")
    (fold,) = read_lfw_pairs(tmp_path / "dev.txt")
    assert fold[1].path2 == tmp_path / "B" / "B_0003.jpg"


@pytest.mark.parametrize(
    "text, message",
    [("2\t2\nA\t1\t2\n", "announces 2 fold"), ("1\t1\nA\t1\nA\t1\tB\t2\n", "line 2: expected a matched"), ("x\n", "line 1")],
)
def test_malformed_pairs_files_are_named(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "p.txt").write_text(text)
    with pytest.raises(DataError, match=message):
        read_lfw_pairs(tmp_path / "p.txt")


def test_csv_folds(tmp_path: Path) -> None:
    rows = "".join(f"a{i}.png,b{i}.png,{'true' if i % 2 else 'false'}\n" for i in range(20))
    (tmp_path / "p.csv").write_text("path1,path2,same\n" + rows)
    folds = read_lfw_pairs(tmp_path / "p.csv")
    assert [len(f) for f in folds] == [2] * 10 and folds[0][0].path1 == tmp_path / "a0.png"
    (tmp_path / "f.csv").write_text("path1,path2,same,fold\na,b,true,x\nc,d,false,y\ne,f,true,x\n")
    assert [len(f) for f in read_lfw_pairs(tmp_path / "f.csv")] == [2, 1]


def test_pair_arrays_index_the_pairs_fold_by_fold(tmp_path: Path) -> None:
    (tmp_path / "f.csv").write_text("path1,path2,same,fold\na,b,true,x\nc,a,false,y\nb,c,true,x\n")
    folds = read_lfw_pairs(tmp_path / "f.csv")
    index = {str(tmp_path / n): i for i, n in enumerate("abc")}
    i1, i2, same, fold_of = pair_arrays(folds, index)
    assert i1.tolist() == [0, 1, 2] and i2.tolist() == [1, 2, 0]
    assert same.tolist() == [True, True, False] and fold_of.tolist() == [0, 0, 1]
    i1, _, _, fold_of = pair_arrays(folds[1:], index)  # a subset of folds is numbered from 0
    assert i1.tolist() == [2] and fold_of.tolist() == [0]


def test_best_threshold_is_the_brute_force_optimum() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        same = rng.random(40) < 0.5
        scores = np.round(rng.normal(same.astype(float), 1.0), 1)  # ties on purpose
        t = best_threshold(scores, same)
        cands = np.r_[scores, scores.max() + 1]
        best = max(((scores >= c) == same).mean() for c in cands)
        assert ((scores >= t) == same).mean() == best


def test_protocol_takes_each_threshold_from_the_other_folds() -> None:
    # fold 0 separates at 0.5; fold 1 at 1.6; each fold is judged at the other's cut
    scores = np.array([1.0, 0.0, 3.0, 0.2])
    same = np.array([True, False, True, False])
    res = lfw_protocol(scores, same, np.array([0, 0, 1, 1]))
    assert [f.threshold for f in res.folds] == [1.6, 0.5]
    assert [f.accuracy for f in res.folds] == [0.5, 1.0]
    assert res.accuracy == 0.75 and res.standard_error == pytest.approx(np.std([0.5, 1.0], ddof=1) / np.sqrt(2))
    rng = np.random.default_rng(1)
    same = rng.random(300) < 0.5
    scores = rng.normal(same * 1.5, 1.0)
    res = lfw_protocol(scores, same, np.arange(300) % 10)
    assert len(res.folds) == 10 and res.pooled is not None
    assert res.pooled.auc == pytest.approx(roc_auc_score(same, scores), abs=1e-12)


@pytest.mark.slow
def test_face_resnet_on_real_lfw_photos(tmp_path: Path, capsys) -> None:
    """The shipped face model, aligned, separates a handful of real LFW pairs (CLI, JSON)."""
    if not LFW.is_dir():
        pytest.skip("LFW not found")
    (tmp_path / "pairs.txt").write_text(TINY_PAIRS)
    assert cli(["evaluate", "lfw", "faces", str(tmp_path / "pairs.txt"), "--images", str(LFW), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["protocol"] == "lfw" and out["n_folds"] == 2 and out["n_pairs"] == 8
    assert out["accuracy"] == 1.0 and out["auc"] == 1.0
    assert len(out["folds"]) == 2 and set(out["tar_at_far"]) == {"1e-2", "1e-3"}
    assert out["face"] == "centre"


def test_lfw_embeds_the_face_at_the_centre() -> None:
    """LFW's photos are centred on their person: an aligning model picks that face."""
    from twinshot.data.images import Preprocessing
    from twinshot.errors import ConfigError
    from twinshot.evaluation.lfw import lfw_preprocessing

    aligning = Preprocessing(size=(150, 150), channels=3, align="face-api")
    assert lfw_preprocessing(aligning).align == "face-api-centre"
    assert lfw_preprocessing(aligning, "model") == aligning
    plain = Preprocessing(size=(28, 28))
    assert lfw_preprocessing(plain) == plain
    with pytest.raises(ConfigError, match="valid: centre, model"):
        lfw_preprocessing(aligning, "largest")


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "p.txt").write_text("3\t1\nA\t1\t2\n")
    assert cli(["evaluate", "lfw", "faces-orl", str(tmp_path / "p.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "announces 3 fold" in err


def test_lfw_embeddings_reuse_the_cache_of_evaluate_lfw(tmp_path: Path) -> None:
    """``lfw_embeddings`` over the pair photos (in ``lfw_pair_photos`` order) reads the cache
    ``evaluate_lfw`` wrote; another photo list gets its own cache file."""
    import torch
    from PIL import Image

    from twinshot.data.images import Preprocessing
    from twinshot.evaluation import evaluate_lfw
    from twinshot.evaluation.lfw import lfw_embeddings, lfw_pair_photos
    from twinshot.models.siamese import ModelSpec, build_model

    rng = np.random.default_rng(0)
    for name, n in (("Ann", 3), ("Bob", 2), ("Cid", 2)):
        (tmp_path / name).mkdir()
        for i in range(1, n + 1):
            Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(tmp_path / name / f"{name}_{i:04d}.jpg")
    (tmp_path / "pairs.txt").write_text("1\t1\nAnn\t1\t2\nAnn\t1\tBob\t2\n")
    torch.manual_seed(0)
    model = build_model(ModelSpec("compact", {"widths": [4], "embedding_dim": 4}, "cosine", {}, Preprocessing(size=(8, 8))))
    model.eval()
    cache = tmp_path / "cache"
    evaluate_lfw(model, tmp_path / "pairs.txt", cache=cache)
    files = sorted(cache.iterdir())
    paths = list(lfw_pair_photos(read_lfw_pairs(tmp_path / "pairs.txt")))
    assert paths == [str(tmp_path / "Ann" / "Ann_0001.jpg"), str(tmp_path / "Ann" / "Ann_0002.jpg"), str(tmp_path / "Bob" / "Bob_0002.jpg")]
    emb, no_face = lfw_embeddings(model, paths, cache=cache)
    assert sorted(cache.iterdir()) == files and emb.shape == (3, 4) and no_face == []
    rest, _ = lfw_embeddings(model, [str(tmp_path / "Cid" / "Cid_0001.jpg"), paths[0]], cache=cache)
    assert len(list(cache.iterdir())) == 2
    torch.testing.assert_close(rest[1], emb[0])
