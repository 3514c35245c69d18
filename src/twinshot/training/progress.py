"""What the user sees while a model trains: a rich progress bar (loss, images/s, ETA)
and one line per epoch. :class:`SilentReporter` is the same interface doing nothing."""

from __future__ import annotations

from typing import Any, Protocol


class Reporter(Protocol):
    """Receives the trainer's events. ``deadline``: when a time budget will stop the run
    (a ``time.perf_counter()`` value), or None."""

    def start(self, total_steps: int, completed: int, deadline: float | None = None) -> None: ...

    def step(self, step: int, loss: float, images_per_s: float) -> None: ...

    def message(self, text: str) -> None: ...

    def stop(self) -> None: ...


class SilentReporter:
    """Shows nothing (tests, ``progress=False``)."""

    def start(self, total_steps: int, completed: int, deadline: float | None = None) -> None:
        pass

    def step(self, step: int, loss: float, images_per_s: float) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def stop(self) -> None:
        pass


def remaining_seconds(steps_left: float, steps_per_s: float | None, deadline: float | None, now: float) -> float | None:
    """Seconds until the run ends: the steps left at the current speed, or the time budget's
    deadline if that comes first (None when neither is known yet)."""
    by_steps = steps_left / steps_per_s if steps_per_s else None
    by_budget = max(0.0, deadline - now) if deadline is not None else None
    known = [t for t in (by_steps, by_budget) if t is not None]
    return min(known) if known else None


def budget_eta_column(deadline: float | None) -> Any:
    """rich's time-remaining column, capped by the time budget's ``deadline``."""
    import time

    from rich.progress import TimeRemainingColumn
    from rich.text import Text

    class _BudgetEta(TimeRemainingColumn):
        def render(self, task: Any) -> Text:
            if task.finished:
                return super().render(task)
            left = remaining_seconds(
                (task.total or 0) - task.completed, task.speed, deadline, time.perf_counter()
            )
            if left is None:
                return Text("-:--:--", style="progress.remaining")
            minutes, seconds = divmod(int(left), 60)
            hours, minutes = divmod(minutes, 60)
            return Text(f"{hours}:{minutes:02d}:{seconds:02d}", style="progress.remaining")

    return _BudgetEta()


class RichReporter:
    """A rich progress bar on stderr: step / total, loss, images per second, elapsed, ETA.
    Epoch lines are printed above the bar."""

    def __init__(self, description: str = "training", console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.description = description
        self._progress: Any = None
        self._task: Any = None

    def start(self, total_steps: int, completed: int, deadline: float | None = None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[ips]} img/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            budget_eta_column(deadline),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=total_steps, completed=completed, loss="-", ips="-")

    def step(self, step: int, loss: float, images_per_s: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, loss=f"{loss:.4f}", ips=f"{images_per_s:,.0f}")

    def message(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, highlight=False, soft_wrap=True)
        else:
            self.console.print(text, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
