"""idle_cores: the cores not busy with other work, read from /proc/stat (the demo trains with
that many threads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinshot.training import run as run_module
from twinshot.training.run import available_cores, idle_cores


class _FakeStat:
    """A /proc/stat whose counters advance by ``(busy, idle)`` jiffies between two reads."""

    def __init__(self, path: Path, busy: int, idle: int) -> None:
        self.path, self.busy, self.idle, self.reads = path, busy, idle, 0
        self.write(0, 0)

    def write(self, busy: int, idle: int) -> None:
        # cpu user nice system idle iowait irq softirq
        self.path.write_text(f"cpu {1000 + busy} 0 100 {5000 + idle} 0 0 0\ncpu0 1 2 3 4\n")


@pytest.mark.parametrize(("busy", "idle", "cores", "want"), [(0, 100, 2, 2), (50, 50, 2, 1), (100, 0, 2, 1), (25, 75, 4, 3)])
def test_idle_share_times_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, busy: int, idle: int, cores: int, want: int) -> None:
    fake = _FakeStat(tmp_path / "stat", busy, idle)
    monkeypatch.setattr(run_module, "available_cores", lambda: cores)
    monkeypatch.setattr(run_module.time, "sleep", lambda _s: fake.write(busy, idle))
    assert idle_cores(stat=str(fake.path)) == want


def test_unreadable_stat_means_every_core(tmp_path: Path) -> None:
    assert idle_cores(stat=str(tmp_path / "missing")) == available_cores()
    (tmp_path / "odd").write_text("intr 1 2 3\n")
    assert idle_cores(stat=str(tmp_path / "odd")) == available_cores()


def test_on_this_machine_between_one_and_every_core() -> None:
    assert 1 <= idle_cores(window=0.05) <= available_cores()
