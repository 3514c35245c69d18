from __future__ import annotations

from pathlib import Path

import pytest

from tests.training._helpers import tiny_folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 108 synthetic 16x16 glyphs in 3 groups (made once per session)."""
    return tiny_folder(tmp_path_factory.mktemp("tiny") / "images")
