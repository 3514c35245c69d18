"""``twinshot report`` through the command line: the readable summary, --json, and a user
error as one line with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import make_image_folder
from tests.report.conftest import make_tiny_model


def _cli(args: list[str]) -> int:
    """``twinshot report ...`` through ``twinshot.cli.main.cli``; until the lead wires the
    command, through a one-command app built the same way (errors handled as cli() does)."""
    import typer

    from twinshot.cli.main import app, cli

    if any(getattr(c, "name", None) == "report" for c in app.registered_commands):
        return cli(["report", *args])
    from twinshot.cli.report import report
    from twinshot.errors import TwinshotError

    local = typer.Typer()
    local.command("report")(report)
    local.command("noop", hidden=True)(lambda: None)
    try:
        typer.main.get_command(local).main(args=["report", *args], prog_name="twinshot", standalone_mode=False)
    except TwinshotError as exc:
        print(f"error: {exc}")
        return 2
    return 0


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    model = make_tiny_model(root / "model")
    folder = make_image_folder(root / "folder", groups=1, classes_per_group=4, per_class=4, nested=False)
    return model, folder


def test_report_folder_summary(setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, folder = setup
    code = _cli([str(model), "--folder", str(folder), "--out", str(tmp_path / "r"), "--far", "0.05", "--episodes", "20"])
    out = capsys.readouterr().out
    assert code == 0
    assert "report:" in out and "EER" in out and "4-way 1-shot accuracy" in out
    assert (tmp_path / "r" / "report.html").is_file()


def test_report_json(setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, folder = setup
    code = _cli([str(model), "--folder", str(folder), "--out", str(tmp_path / "r"), "--episodes", "20", "--map", "pca", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    d = json.loads(out)
    assert d["n_classes"] == 4 and d["n_genuine"] == 4 * 6 and 0 <= d["eer"] <= 1
    assert d["episodes"]["n_way"] == 4 and Path(d["html"]).is_file()


def test_report_needs_exactly_one_input(setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, _ = setup
    code = _cli([str(model), "--out", str(tmp_path / "r")])
    out = capsys.readouterr()
    assert code == 2
    assert "exactly one of --pairs" in out.out + out.err
