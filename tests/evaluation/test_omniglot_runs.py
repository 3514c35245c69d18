"""The 20 official one-shot runs, on fixture archives built in the official format."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.evaluation.fixtures import all_runs_files, make_all_runs, write_all_runs
from tests.evaluation.models import pixel_model
from twinshot.data.images import Preprocessing
from twinshot.errors import DataError
from twinshot.evaluation import OmniglotRunsResult, evaluate_omniglot_runs
from twinshot.models import ModelSpec, build_model


@pytest.fixture(scope="module")
def runs_files():
    return all_runs_files(duplicate=True)


def test_fixture_is_in_the_official_format(tmp_path: Path, runs_files) -> None:
    files, answers = runs_files
    zpath = write_all_runs(tmp_path / "all_runs.zip", files)
    with zipfile.ZipFile(zpath) as z:
        names = set(z.namelist())
        img = Image.open(io.BytesIO(z.read("run07/training/class13.png")))
        assert img.mode == "1" and img.size == (105, 105)
        lines = z.read("run20/class_labels.txt").decode().splitlines()
    assert {f"run{r:02d}/test/item{k:02d}.png" for r in range(1, 21) for k in range(1, 21)} <= names
    assert {f"run{r:02d}/training/class{k:02d}.png" for r in range(1, 21) for k in range(1, 21)} <= names
    assert len(lines) == 20
    assert lines[0] == f"run20/test/item01.png run20/training/class{answers[19][0] + 1:02d}.png"


@pytest.mark.parametrize("top_folder", [None, "all_runs"])
@pytest.mark.parametrize("as_zip", [True, False])
def test_perfect_embedding_makes_no_error(tmp_path: Path, runs_files, top_folder, as_zip) -> None:
    files, _ = runs_files
    target = write_all_runs(tmp_path / ("all_runs.zip" if as_zip else "unpacked"), files, top_folder=top_folder, as_zip=as_zip)
    result = evaluate_omniglot_runs(pixel_model(), target)
    assert isinstance(result, OmniglotRunsResult)
    assert result.error_rate == 0.0 and result.accuracy == 1.0
    assert result.runs == (0.0,) * 20
    d = result.to_dict()
    assert d["error_rate"] == 0.0 and len(d["runs"]) == 20


def test_scrambled_labels_give_the_expected_error(tmp_path: Path) -> None:
    scrambled = {1: 2, 5: 20, 12: 7}
    zpath = make_all_runs(tmp_path / "all_runs.zip", duplicate=True, scrambled=scrambled)
    result = evaluate_omniglot_runs(pixel_model(), zpath)
    expected = [scrambled.get(r, 0) / 20 for r in range(1, 21)]
    assert list(result.runs) == pytest.approx(expected)
    assert result.error_rate == pytest.approx(sum(expected) / 20)
    assert result.accuracy == pytest.approx(1 - result.error_rate)


def test_untrained_real_model_runs(tmp_path: Path) -> None:
    """A registered encoder, untrained, at Lake's native 105x105: exact duplicates are still
    found (same input -> same embedding), through the real model path."""
    zpath = make_all_runs(tmp_path / "all_runs.zip", duplicate=True)
    spec = ModelSpec(encoder="compact", encoder_params={"widths": [4], "pool": "flatten"}, head="euclidean",
                     preprocessing=Preprocessing(size=(105, 105), invert=True))
    torch_model = build_model(spec)
    result = evaluate_omniglot_runs(torch_model, zpath)
    assert result.error_rate == 0.0


def _rewrite(tmp_path: Path, files: dict[str, bytes], **kw) -> Path:
    return write_all_runs(tmp_path / "bad.zip", files, **kw)


def test_layout_errors_name_what_is_missing(tmp_path: Path, runs_files) -> None:
    files, _ = runs_files
    model = pixel_model()

    with pytest.raises(DataError, match="no such file"):
        evaluate_omniglot_runs(model, tmp_path / "nope.zip")

    (tmp_path / "garbage.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable zip"):
        evaluate_omniglot_runs(model, tmp_path / "garbage.zip")

    no_runs = {k.replace("run", "set"): v for k, v in files.items()}
    with pytest.raises(DataError, match=r"no runNN/class_labels\.txt"):
        evaluate_omniglot_runs(model, _rewrite(tmp_path, no_runs))

    missing_run = {k: v for k, v in files.items() if not k.startswith(("run07/", "run19/"))}
    with pytest.raises(DataError, match=r"missing run07/class_labels\.txt, run19/class_labels\.txt"):
        evaluate_omniglot_runs(model, _rewrite(tmp_path, missing_run))

    missing_image = {k: v for k, v in files.items() if k != "run03/training/class05.png"}
    with pytest.raises(DataError, match=r"run03/training/class05\.png is not in the archive"):
        evaluate_omniglot_runs(model, _rewrite(tmp_path, missing_image))

    no_tests = {k: v for k, v in files.items() if not k.startswith("run04/test/")}
    with pytest.raises(DataError, match=r"run04/test/ holds no images"):
        evaluate_omniglot_runs(model, _rewrite(tmp_path, no_tests))

    short = dict(files)
    short["run02/class_labels.txt"] = b"\n".join(files["run02/class_labels.txt"].splitlines()[:-1])
    with pytest.raises(DataError, match=r"run02/class_labels\.txt has no line for run02/test/item20\.png"):
        evaluate_omniglot_runs(model, _rewrite(tmp_path, short))

    bad_line = dict(files)
    bad_line["run09/class_labels.txt"] = b"run09/test/item01.png\n"
    with pytest.raises(DataError, match=r"run09/class_labels\.txt, line 1: expected"):
        evaluate_omniglot_runs(model, _rewrite(tmp_path, bad_line))

    broken = dict(files)
    broken["run11/test/item03.png"] = b"\x89PNG garbage"
    with pytest.raises(DataError, match=r"run11/test/item03\.png"):
        evaluate_omniglot_runs(model, _rewrite(tmp_path, broken))

    with pytest.raises(DataError, match="several folders"):
        two = {**{f"a/{k}": v for k, v in files.items()}, **{f"b/{k}": v for k, v in files.items()}}
        evaluate_omniglot_runs(model, _rewrite(tmp_path, two))


def test_windows_line_endings_and_macos_junk(tmp_path: Path, runs_files) -> None:
    files, _ = runs_files
    odd = {k: (v.replace(b"\n", b"\r\n") if k.endswith(".txt") else v) for k, v in files.items()}
    odd["__MACOSX/run01/._class_labels.txt"] = b"junk"
    result = evaluate_omniglot_runs(pixel_model(), _rewrite(tmp_path, odd, top_folder="all_runs"))
    assert result.error_rate == 0.0
