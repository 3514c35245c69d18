"""Reading labelled pairs files."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinshot.errors import DataError
from twinshot.evaluation import Pair, read_pairs_csv


def test_reads_flags_and_resolves_paths(tmp_path: Path) -> None:
    csv = tmp_path / "sub" / "pairs.csv"
    csv.parent.mkdir()
    csv.write_text(
        "\ufeff path1 , path2 ,same\n"
        "a.png,b.png,true\n"
        "a.png,/abs/c.png,FALSE\n"
        "\n"
        "x/y.png, z.png , 1\n"
        "x/y.png,z.png,no\n"
    )
    pairs = read_pairs_csv(csv)
    assert pairs == [
        Pair(csv.parent / "a.png", csv.parent / "b.png", True),
        Pair(csv.parent / "a.png", Path("/abs/c.png"), False),
        Pair(csv.parent / "x/y.png", csv.parent / "z.png", True),
        Pair(csv.parent / "x/y.png", csv.parent / "z.png", False),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b,same\n1,2,true\n", "missing column"),
        ("path1,path2,same\na.png,b.png,maybe\n", "line 2: field 'same' is 'maybe'"),
        ("path1,path2,same\na.png,,true\n", "line 2: empty path1 or path2"),
        ("path1,path2,same\n", "no pairs"),
        ("", "missing column"),
    ],
)
def test_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    csv = tmp_path / "pairs.csv"
    csv.write_text(text)
    with pytest.raises(DataError, match=message):
        read_pairs_csv(csv)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such pairs file"):
        read_pairs_csv(tmp_path / "nope.csv")
