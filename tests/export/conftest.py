"""One ONNX export shared by the export tests (an ONNX export takes a few seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinshot.models import SiameseNetwork

from tests.export.helpers import tiny_model


@pytest.fixture(scope="session")
def onnx_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[SiameseNetwork, Path, object]:
    """A tiny euclidean model, its ONNX export (default exporter) and the ExportResult."""
    pytest.importorskip("onnxruntime")
    from twinshot.export import export_model

    model = tiny_model("euclidean")
    path = tmp_path_factory.mktemp("onnx") / "encoder.onnx"
    result = export_model(model, "onnx", path)
    return model, path, result
