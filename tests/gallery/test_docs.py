"""The runnable example of docs/gallery.md runs (with a small untrained model)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.gallery.helpers import saved_model

DOC = Path(__file__).resolve().parents[2] / "docs" / "gallery.md"


def _example(name: str) -> str:
    text = DOC.read_text()
    match = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)```", text, re.S)
    assert match, f"example {name!r} not found in {DOC}"
    return match.group(1)


def test_office_example_runs(tmp_path: Path, omniglot_dir: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    code = _example("office")
    model = saved_model(tmp_path / "model")
    code = code.replace('MODEL = "omniglot"', f"MODEL = {str(model)!r}")
    code = code.replace('OMNIGLOT = "../shared/datasets/omniglot"', f"OMNIGLOT = {str(omniglot_dir)!r}")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOC), "exec"), {"__name__": "__docs__"})
    out = capsys.readouterr().out
    assert "threshold" in out and "same character" in out
    assert (tmp_path / "drawings.db").is_file()
    assert os.path.getsize(tmp_path / "drawings.db") > 0
