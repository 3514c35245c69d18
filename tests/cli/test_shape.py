"""The command line looks like its peers': --version, -h, plain help with upper-case
metavars and no type labels, one-line usage errors, help not wrapped when piped."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from twinshot.cli.main import build_command, cli

ENTRY = [sys.executable, "-c", "from twinshot.cli.main import main; main()"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ENTRY, *args], capture_output=True, text=True, timeout=120)


def _all_command_paths() -> list[list[str]]:
    paths, stack = [], [([], build_command(piped=True))]
    while stack:
        path, cmd = stack.pop()
        paths.append(path)
        stack.extend((path + [name], sub) for name, sub in getattr(cmd, "commands", {}).items())
    return sorted(paths)


def test_version_and_short_help_through_the_entry_point() -> None:
    from twinshot import __version__

    done = _run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"twinshot {__version__}", done
    short, long = _run("-h"), _run("--help")
    assert short.returncode == long.returncode == 0
    assert short.stdout == long.stdout and "Commands:" in short.stdout
    assert _run("gallery", "create", "-h").stdout.startswith("Usage: twinshot gallery create [OPTIONS] GALLERY")


@pytest.mark.parametrize("path", _all_command_paths(), ids=lambda p: "-".join(p) or "root")
def test_help_has_no_type_labels_and_upper_case_arguments(path: list[str], capsys) -> None:
    assert cli([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert not re.search(r"<(bool|str|int|float|list|path|Path)[^>]*>", out), out
    assert "╭" not in out and "│" not in out  # no boxed panels
    usage = out.splitlines()[0]
    assert usage.startswith("Usage: twinshot") and "{" not in usage
    words = usage.split("[OPTIONS]", 1)[1].replace("[", " ").replace("]", " ").replace("...", " ").split()
    assert all(w.isupper() or w == "COMMAND" or w == "ARGS" for w in words), usage
    if "--progress" in out:
        assert re.search(r"--progress / --no-progress\s+Show", out), out


def test_piped_help_is_not_wrapped_at_80_columns() -> None:
    out = _run("train", "--help").stdout
    assert any(len(line) > 100 for line in out.splitlines()), out  # the --precision line is one line


def test_usage_errors_are_one_line_with_exit_2() -> None:
    for args, match in [
        (["gallery", "create"], "missing argument 'GALLERY'"),
        (["gallery", "create", "x.db"], "missing option '--model'"),
        (["train", "--no-such-flag"], "no such option"),
        (["bogus"], "no such command"),
        (["evaluate", "episodes", "m", "d", "--n-way", "twenty"], "invalid value for '--n-way'"),
    ]:
        done = _run(*args)
        assert done.returncode == 2, done
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
        assert match.lower() in done.stderr.lower() and "Traceback" not in done.stderr
        assert "╭" not in done.stderr


def test_usage_error_under_json_is_json(capsys) -> None:
    assert cli(["gallery", "create", "x.db", "--json"]) == 2
    captured = capsys.readouterr()
    body = json.loads(captured.out)
    assert body["error"] == "usage" and "--model" in body["message"]
    assert captured.err.startswith("error: ")


def test_group_without_command_prints_its_help(capsys) -> None:
    assert cli(["gallery"]) == 0
    assert "Commands:" in capsys.readouterr().out


def test_help_through_the_entry_point_does_not_import_torch() -> None:
    code = ("import sys; from twinshot.cli.main import cli; code = cli(['gallery', 'create', '--help']); "
            "assert code == 0 and 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
