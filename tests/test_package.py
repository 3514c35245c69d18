"""The package as a library: typed (py.typed), its main entry points at the top level,
imported lazily (no torch for ``import twinshot``), and return annotations that render."""

from __future__ import annotations

import inspect
import pydoc
import subprocess
import sys
from pathlib import Path

import twinshot


def test_py_typed_is_shipped() -> None:
    assert (Path(twinshot.__file__).parent / "py.typed").is_file()
    assert '"py.typed"' in (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()


def test_top_level_exports_resolve() -> None:
    for name in twinshot.__all__:
        assert getattr(twinshot, name) is not None, name
    from twinshot import Gallery, load_model, train  # noqa: F401  (the documented form)
    from twinshot.gallery import Gallery as G

    assert Gallery is G and "Gallery" in dir(twinshot)


def test_import_twinshot_does_not_import_torch() -> None:
    code = "import sys, twinshot; twinshot.__version__; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_return_annotations_render_without_nested_quotes() -> None:
    from twinshot import Gallery

    text = pydoc.render_doc(Gallery.create, renderer=pydoc.plaintext)
    assert "-> 'Gallery'" in text and "\"'Gallery'\"" not in text and "'\"Gallery\"'" not in text
    assert inspect.signature(Gallery.open).return_annotation == "Gallery"
