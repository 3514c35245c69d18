"""Every fenced ``console`` / ``sh`` / ``bash`` / ``python`` block of README.md and docs/*.md,
run as written, in order, in one scratch directory per Markdown file.

The scratch directory has ``../shared`` (the datasets, as the docs expect from the
repository root), ``twinshot`` and ``python`` on ``PATH`` and its own ``HOME`` (so the ONNX
cache and any keys file stay out of the user's). A block passes when every command exits
with status 0 and prints no traceback; a ``console`` block's expected output is compared
loosely (the first line of each command's output must start like the documented one, up
to its first digit): real numbers differ from machine to machine.

Run one file's blocks with ``pytest tests/docs -k gallery_md`` (ids are ``<file>_md_L<line>``).

Blocks that cannot run here are listed in :data:`SKIP` (placeholders, other machines, or
far too long for a test) with a reason each, or marked in the Markdown itself with
``<!-- doc-test: skip REASON -->`` on the line before the fence; ``<!-- doc-test: slow -->``
puts a block under the ``slow`` marker. A ``twinshot serve`` command is started in the
background (and stopped after its file's last block); its port is replaced by a free one.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATASETS = Path(os.environ.get("TWINSHOT_DATASETS", REPO.parent / "shared" / "datasets"))
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LANGS = ("console", "sh", "bash", "python")
TIMEOUT = 600

#: (Markdown file, text the block contains, reason): blocks that are not run.
SKIP: list[tuple[str, str, str]] = [
    ("README.md", "make demo", "installs the venv, then trains and evaluates for minutes (what `make demo` does; tests/cli/test_demo.py runs the demo small)"),
    ("README.md", "twinshot train --preset omniglot --out runs/omniglot", "a list of commands with placeholder files (alice.png, visitor.png, pairs.csv, all_runs.zip); each is run for real in tests/cli"),
    ("training.md", "twinshot train --preset omniglot --out runs/omniglot", "trains the full presets (about 25 minutes each)"),
    ("gallery.md", "twinshot train --preset omniglot-minimal --time-budget 2m", "trains for 2 minutes"),
    ("gallery.md", "evaluate_open_set(gallery, query_images", "a fragment: gallery, query_images and true_names are the reader's"),
    ("service.md", "python -m bench.service_load", "a 30-second load benchmark (tests/service/test_bench.py runs --tiny)"),
    ("applications.md", "twinshot train --preset", "trains a preset (minutes)"),
    ("applications.md", "twinshot report MODEL (--pairs PAIRS.csv", "a usage synopsis (MODEL, PAIRS.csv, DIR are placeholders)"),
    ("applications.md", 'pairs = writer_verification_pairs("sig-heldout")', "a fragment: the held-out writers' folder (sig-heldout) is made further down"),
    ("applications.md", "python -m bench", "a benchmark run (minutes)"),
    ("experiments.md", "twinshot train", "trains (minutes to hours)"),
]


#: (Markdown file, text the block contains): blocks that take more than about 15 s here,
#: run under the ``slow`` marker (deselect with ``-m "not slow"``).
SLOW: list[tuple[str, str]] = [
    ("README.md", "gallery calibrate office.db"),
    ("README.md", "gallery create bank.db"),
    ("README.md", "twinshot serve office.db"),
    ("applications.md", "twinshot report faces-orl"),
    ("applications.md", "gallery create faces.db"),
    ("applications.md", "twinshot report signatures"),
    ("applications.md", "gallery create bank.db"),
    ("service.md", "twinshot gallery calibrate door.db"),
    ("gallery.md", "twinshot gallery create staff.db"),
    ("gallery.md", "twinshot export omniglot-minimal --format onnx"),
    ("export.md", "twinshot export omniglot --format onnx"),
]


@dataclass(frozen=True)
class Block:
    """One fenced block: its file, first line (1-based, the fence), language and text."""

    doc: Path
    line: int
    lang: str
    text: str
    marker: str  # the <!-- doc-test: ... --> comment before the fence, if any

    @property
    def id(self) -> str:
        return f"{self.doc.stem.replace('-', '_').lower()}_md_L{self.line}"


def blocks(doc: Path) -> list[Block]:
    """The fenced blocks of ``doc`` in the languages this runner runs."""
    out, lines, i = [], doc.read_text().splitlines(), 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i
        body, i = [], i + 1
        while i < len(lines) and not re.match(rf"^{indent}```\s*$", lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        prev = lines[start - 1].strip() if start > 0 else ""
        marker = prev if prev.startswith("<!-- doc-test:") else ""
        if not lang and body and body[0].startswith("$ "):
            lang = "console"  # an untagged transcript
        if lang in LANGS:
            out.append(Block(doc, start + 1, lang, "\n".join(body) + "\n", marker))
    return out


def skip_reason(block: Block) -> str | None:
    if "doc-test: skip" in block.marker:
        return block.marker.split("skip", 1)[1].strip(" ->") or "marked skip in the Markdown"
    for name, needle, reason in SKIP:
        if block.doc.name == name and needle in block.text:
            return reason
    return None


ALL = [b for doc in DOCS for b in blocks(doc)]


def _params() -> list:
    params = []
    for b in ALL:
        marks = []
        reason = skip_reason(b)
        if reason:
            marks.append(pytest.mark.skip(reason=reason))
        elif "doc-test: slow" in b.marker or any(b.doc.name == n and needle in b.text for n, needle in SLOW):
            marks.append(pytest.mark.slow)
        params.append(pytest.param(b, id=b.id, marks=marks))
    return params


# ---------------------------------------------------------------------------------------
# Turning a block into a script


@dataclass
class Command:
    text: str
    expected: list[str]


def console_commands(text: str) -> list[Command]:
    """``$ command`` lines (``\\`` continues them) and the output lines documented after each."""
    commands: list[Command] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            cmd = [line[2:]]
            while cmd[-1].rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd.append(lines[i])
            commands.append(Command("\n".join(cmd), []))
        elif commands:
            commands[-1].expected.append(line)
        i += 1
    return commands


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_ASSIGN = re.compile(r"(?:^|[;&|]\s*|\bdo\s+)([A-Za-z_][A-Za-z0-9_]*)=", re.M)  # NAME=... as a command
_WAIT = """import pathlib, socket, sys, time
# The port listens before the service is ready (it is bound first): wait for both the port
# and the service's own "listening on" line in its log.
for _ in range(1800):  # up to 3 minutes: start-up loads the model and may export it to ONNX first
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()
        log = pathlib.Path(sys.argv[2])
        if log.is_file() and "listening on" in log.read_text(errors="replace"):
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(f"no server on port {sys.argv[1]}")
"""


def shell_script(commands: list[str], state: "DocState") -> str:
    """A bash script that runs ``commands`` in order, marking where each one's output starts,
    stopping at the first failure, and saving the shell variables they set for later blocks."""
    names: set[str] = set()
    parts = ["set -e -o pipefail", f"cd {state.work}", "[ -f .docvars ] && source .docvars"]
    for n, cmd in enumerate(commands):
        cmd = state.ports(cmd)
        code = "\n".join(line.split("#", 1)[0] for line in cmd.splitlines())  # without comments
        names.update(m.group(1) for m in _ASSIGN.finditer(code))
        parts.append(f"printf '\\n@@DOC {n}@@\\n'")
        serve = re.match(r"\s*twinshot serve\b(.*?)&?\s*$", cmd, re.S)
        if serve:
            port = re.search(r"--port\s+(\d+)", cmd)
            parts.append(f"nohup {cmd.rstrip().rstrip('&')} > serve-{n}.log 2>&1 &")
            parts.append("echo $! >> .docpids")
            if port:
                parts.append(f"python .docwait.py {port.group(1)} serve-{n}.log")
                parts.append(f"echo listening on http://127.0.0.1:{port.group(1)}; cat serve-{n}.log")
        elif re.match(r"\s*grep\b", cmd):
            parts.append(f"{{ {cmd}\n}} || [ $? -eq 1 ]")  # grep's 1 means "no match", a documented answer
        else:
            parts.append(cmd)
    if names:
        parts.append(f"declare -p {' '.join(sorted(names))} >> .docvars 2>/dev/null || true")
    return "\n".join(parts) + "\n"


class DocState:
    """The scratch directory of one Markdown file, and the ports its servers were moved to."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.work = base / "work"
        self.work.mkdir(parents=True)
        (self.work / ".docwait.py").write_text(_WAIT)
        (base / "shared").symlink_to(DATASETS.resolve().parent, target_is_directory=True)
        self.port_map: dict[str, str] = {}

    def ports(self, text: str) -> str:
        for port in re.findall(r"--port\s+(\d+)", text):
            self.port_map.setdefault(port, str(_free_port()))
        for old, new in self.port_map.items():
            text = re.sub(rf"(?<=[:\s]){old}\b", new, text)
        return text

    def stop_servers(self) -> None:
        pids = self.work / ".docpids"
        if not pids.is_file():
            return
        for pid in pids.read_text().split():
            try:
                os.kill(int(pid), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass


def environment(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["HOME"] = str(home)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    src = str(REPO / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _start_of(line: str) -> str:
    """The part of a documented output line that must match: up to its first digit."""
    return re.split(r"\d", line, 1)[0][:24]


# ---------------------------------------------------------------------------------------
# The tests


@pytest.fixture(scope="session")
def doc_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("doc-home")


_STATES: dict[Path, DocState] = {}


@pytest.fixture(scope="module")
def doc_states(tmp_path_factory: pytest.TempPathFactory):
    yield lambda doc: _STATES.setdefault(doc, DocState(tmp_path_factory.mktemp(doc.stem)))
    for state in _STATES.values():
        state.stop_servers()
    _STATES.clear()


@pytest.mark.parametrize("block", _params())
def test_block_runs_as_written(block: Block, doc_states, doc_home: Path) -> None:
    if not DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {DATASETS} (set TWINSHOT_DATASETS)")
    state = doc_states(block.doc)
    env = environment(doc_home)
    where = f"{block.doc.relative_to(REPO)}:{block.line}"
    if block.lang == "python":
        script = state.work / f"_block_L{block.line}.py"
        script.write_text(block.text)
        proc = subprocess.run([sys.executable, script.name], cwd=state.work, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{where}: exit status {proc.returncode}\n{output[-3000:]}"
        assert "Traceback (most recent call last)" not in output, f"{where}\n{output[-3000:]}"
        return
    commands = console_commands(block.text) if block.lang == "console" else [Command(block.text, [])]
    assert commands, f"{where}: a console block without `$ ` commands"
    proc = subprocess.run(["bash", "-c", shell_script([c.text for c in commands], state)], cwd=state.work, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    pieces = re.split(r"^@@DOC (\d+)@@\n", proc.stdout, flags=re.M)  # each marker is on its own line
    outputs = {int(pieces[i]): pieces[i + 1] for i in range(1, len(pieces) - 1, 2)}
    failed = max(outputs, default=0)
    assert proc.returncode == 0, (
        f"{where}: `{commands[failed].text}` failed (exit status {proc.returncode})\n"
        f"{outputs.get(failed, '')[-2000:]}{proc.stderr[-2000:]}"
    )
    assert "Traceback (most recent call last)" not in proc.stdout + proc.stderr, f"{where}\n{proc.stderr[-3000:]}"
    for n, command in enumerate(commands):
        documented = [line for line in command.expected if line.strip() and line.strip() != "..."]
        if not documented or block.lang != "console":
            continue
        want = _start_of(state.ports(documented[0]))
        got = outputs.get(n, "").splitlines() + proc.stderr.splitlines()
        assert any(line.startswith(want) for line in got), (
            f"{where}: `{command.text}` should print a line starting {want!r}; it printed:\n{outputs.get(n, '')[-2000:]}"
        )


def test_runner_finds_the_blocks() -> None:
    ids = [b.id for b in ALL]
    assert len(ids) == len(set(ids)) and any(i.startswith("readme_md") for i in ids)
    assert all(b.lang in LANGS for b in ALL)
    reasons = [skip_reason(b) for b in ALL]
    assert all(r is None or len(r) > 10 for r in reasons)
