"""Terminal output: progress bars for long phases, and one-line errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

console = Console(stderr=True)


def make_progress(*, transient: bool = False, disable: bool = False) -> Progress:
    """A progress display with a bar, counts and elapsed time (`transient`: erased at the end;
    `disable`: shows nothing, for --json output)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
        disable=disable,
    )


class ConsoleEvents:
    """TrainingEvents drawn as rich progress bars (one bar per phase)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._current: TaskID | None = None

    def phase(self, name: str, total: int | None = None) -> Callable[[int], None]:
        """Finish the previous phase's bar and start one for `name`."""
        if self._current is not None:
            task = self.progress.tasks[self._current]
            self.progress.update(self._current, completed=task.total or 1, total=task.total or 1)
        self._current = self.progress.add_task(name, total=total)
        task_id = self._current
        return lambda n: self.progress.advance(task_id, n)

    def close(self) -> None:
        """Mark the last phase done."""
        self.phase("done", 1)(1)


@contextmanager
def training_events(enabled: bool) -> Iterator[ConsoleEvents | None]:
    """ConsoleEvents inside a live progress display, or None when output is for scripts."""
    if not enabled:
        yield None
        return
    with make_progress() as progress:
        events = ConsoleEvents(progress)
        yield events
        events.close()
