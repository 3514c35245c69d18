"""Real processes for the multi-process and crash tests: ``twinshot serve`` and CLI
commands as subprocesses of the test (the gallery shared through its SQLite file)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``twinshot ARGS`` in a new process; returns the finished process (text output)."""
    code = "from twinshot.cli.main import main; main()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env(), timeout=timeout)


def cli_popen(*args: str) -> subprocess.Popen:
    code = "from twinshot.cli.main import main; main()"
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


@dataclass
class Server:
    """A ``twinshot serve`` process on 127.0.0.1 and a client with the admin key."""

    proc: subprocess.Popen
    url: str
    client: httpx.Client
    banner: str

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """``kill -9``: no clean-up of any kind."""
        self.client.close()
        self.proc.kill()
        self.proc.wait()


def serve(gallery: Path, keys: Path, admin_key: str, *extra: str, timeout: float = 120) -> Server:
    """Start ``twinshot serve GALLERY`` on a free port; waits until it listens."""
    code = "from twinshot.cli.main import main; main()"
    args = ["serve", str(gallery), "--keys", str(keys), "--port", "0", "--torch-threads", "1", "--workers", "1", "--log-level", "warning", *extra]
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line.startswith("listening on "):
        proc.kill()
        _, err = proc.communicate(timeout=timeout)
        raise RuntimeError(f"twinshot serve did not start: {line!r} {err[-2000:]}")
    url = line.split()[-1]
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=timeout)
    return Server(proc, url, client, line)
