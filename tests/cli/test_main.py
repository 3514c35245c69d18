"""The command line: --help answers without importing torch; errors are one line."""

from __future__ import annotations

import subprocess
import sys

from twinshot.cli.main import cli


def test_help_lists_the_commands(capsys) -> None:
    assert cli(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ["train", "evaluate", "gallery", "verify", "demo", "models"]:
        assert name in out


def test_help_does_not_import_torch() -> None:
    code = "import sys; from twinshot.cli.main import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_models_list_json(capsys) -> None:
    import json

    assert cli(["models", "list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "compact" in {e["name"] for e in out["encoders"]} and "weighted_l1" in {h["name"] for h in out["heads"]}
