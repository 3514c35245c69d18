"""What the user sees while a model trains: a rich progress bar (loss, images/s, ETA)
and one line per epoch. :class:`SilentReporter` is the same interface doing nothing."""

from __future__ import annotations

from typing import Any, Protocol


class Reporter(Protocol):
    """Receives the trainer's events."""

    def start(self, total_steps: int, completed: int) -> None: ...

    def step(self, step: int, loss: float, images_per_s: float) -> None: ...

    def message(self, text: str) -> None: ...

    def stop(self) -> None: ...


class SilentReporter:
    """Shows nothing (tests, ``progress=False``)."""

    def start(self, total_steps: int, completed: int) -> None:
        pass

    def step(self, step: int, loss: float, images_per_s: float) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def stop(self) -> None:
        pass


class RichReporter:
    """A rich progress bar on stderr: step / total, loss, images per second, elapsed, ETA.
    Epoch lines are printed above the bar."""

    def __init__(self, description: str = "training", console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.description = description
        self._progress: Any = None
        self._task: Any = None

    def start(self, total_steps: int, completed: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[ips]} img/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
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
            self._progress.console.print(text, highlight=False)
        else:
            self.console.print(text, highlight=False)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
