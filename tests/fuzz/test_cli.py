"""The fuzz corpus through the command line: ``twinshot verify``, ``gallery enroll`` and
``gallery identify`` on every file (in process, through the real entry point
``twinshot.cli.main.cli``) and a handful of real subprocesses. Exit 0 or 2 only, an
``error: FILE: ...`` line for every refusal, never a traceback, and a blank or broken file
never enrolled and never matched."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from twinshot.cli.main import cli

from tests.fuzz.corpus import Item

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning", "ignore::DeprecationWarning")]


def run(capsys, *args: object) -> tuple[int, str, str]:
    code = cli([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def check_refusal(item: Item, code: int, out: str, err: str) -> None:
    assert code == 2, (item.what, code, out)
    if out:  # under --json the error is also one JSON object on stdout
        error = json.loads(out)
        assert set(error) == {"error", "message"} and error["message"].startswith(f"{item.path}: "), (item.what, out)
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"error: {item.path}: "), (item.what, err)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory, fuzz_model: Path, references: list[Path]) -> Path:
    path = tmp_path_factory.mktemp("fuzz-cli") / "door.db"
    assert cli(["gallery", "create", str(path), "--model", str(fuzz_model), "--threshold", "4.0"]) == 0
    assert cli(["gallery", "enroll", str(path), "alice", str(references[0])]) == 0
    return path


@pytest.mark.timeout(300)
def test_identify_and_verify_every_file(capsys, corpus: list[Item], gallery: Path, fuzz_model: Path, references: list[Path]) -> None:
    capsys.readouterr()
    counts: collections.Counter = collections.Counter()
    for i, item in enumerate(corpus):
        if i % 2 == 0:
            code, out, err = run(capsys, "gallery", "identify", gallery, item.path, "--json")
        else:
            code, out, err = run(capsys, "verify", fuzz_model, references[0], item.path, "--json")
        counts[item.kind, code] += 1
        if code == 2:
            check_refusal(item, code, out, err)
            assert item.kind != "valid", (item.what, err)
            continue
        assert code == 0 and item.kind in ("valid", "any"), (item.what, code, err)
        assert "Traceback" not in err
        json.loads(out)
    print("cli identify/verify outcomes:", dict(sorted(counts.items())))


@pytest.mark.timeout(300)
def test_enroll_every_file(capsys, corpus: list[Item], gallery: Path, references: list[Path]) -> None:
    capsys.readouterr()
    enrolled = 1
    for i, item in enumerate(corpus[::6]):
        code, out, err = run(capsys, "gallery", "enroll", gallery, f"fuzz{i}", references[1], item.path, "--json")
        if code == 2:
            check_refusal(item, code, out, err)
            assert item.kind != "valid", (item.what, err)
        else:
            assert code == 0 and item.kind in ("valid", "any"), (item.what, code, err)
            enrolled += 1
    listed = json.loads(run(capsys, "gallery", "list", gallery, "--json")[1])
    assert listed["n_identities"] == enrolled and listed["n_embeddings"] == 1 + 2 * (enrolled - 1)  # nothing half-enrolled
    # no blank or broken file matches anything now in the gallery either
    for item in [i for i in corpus if i.kind in ("blank", "broken")][::5]:
        check_refusal(item, *run(capsys, "gallery", "identify", gallery, item.path))


@pytest.mark.timeout(120)
def test_real_processes(corpus: list[Item], gallery: Path) -> None:
    """A few files through real ``twinshot`` processes: the exit status and stderr a
    shell sees."""
    picks = [next(i for i in corpus if i.kind == k) for k in ("valid", "blank", "broken")]
    picks += [next(i for i in corpus if w in i.what) for w in ("zero bytes", "100000x100000", "blank zlib bomb", "20000x1")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "twinshot.cli.main", "gallery", "identify", str(gallery), *(str(i.path) for i in picks[:1]), "--json"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout), proc.stderr
    for item in picks[1:]:
        proc = subprocess.run(
            [sys.executable, "-m", "twinshot.cli.main", "gallery", "identify", str(gallery), str(item.path)],
            capture_output=True, text=True, timeout=60, env=env,
        )
        assert proc.returncode == 2 and proc.stdout == "", (item.what, proc.stdout)
        assert "Traceback" not in proc.stderr and proc.stderr.splitlines()[-1].startswith(f"error: {item.path}: "), proc.stderr
