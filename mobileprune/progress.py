"""Progress bars and log lines, without tying the Python API to a terminal.

Long loops take a `Progress` and call `progress.task(...)`; the CLI passes a rich-backed one, notebooks
and tests get the silent default (or `Progress(console)` for output without bars).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class Task:
    def __init__(self, bar: RichProgress | None, task_id: int | None):
        self._bar, self._id = bar, task_id

    def advance(self, n: float = 1, note: str | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._id, advance=n, **({"note": note} if note else {}))


class Progress:
    """Log lines to a console (if any) and progress bars (if `bars`)."""

    def __init__(self, console: Console | None = None, bars: bool = False):
        self.console = console
        self.bars = bars and console is not None

    def log(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message, highlight=False, soft_wrap=True)  # log lines: the terminal wraps them

    @contextmanager
    def task(self, description: str, total: float) -> Iterator[Task]:
        if not self.bars:
            yield Task(None, None)
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
        )
        with RichProgress(*columns, console=self.console, transient=True) as bar:
            yield Task(bar, bar.add_task(description, total=total, note=""))


SILENT = Progress()
