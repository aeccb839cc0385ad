"""Terminal output: progress bars for long phases, and one-line errors."""

from __future__ import annotations

import sys
import time
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

# soft_wrap: lines are never broken at the width, so paths in logs and errors stay whole
console = Console(stderr=True, soft_wrap=True)


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


def _write_stderr(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


class LogEvents:
    """TrainingEvents as plain timestamped lines, for output that is not a terminal (a log file,
    a CI job), where a live progress bar would show nothing until the end: one line when a
    phase starts and one at every tenth of its progress."""

    def __init__(
        self,
        write: Callable[[str], None] = _write_stderr,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.write = write
        self.clock = clock

    def phase(self, name: str, total: int | None = None) -> Callable[[int], None]:
        """Log the start of `name`; returns the function that advances (and logs) its progress."""
        self.write(f"{name}" + (f": {total:,} steps" if total else ""))
        if not total:
            return lambda n: None
        started = self.clock()
        done = 0
        logged = 0  # tenths already logged

        def advance(n: int) -> None:
            nonlocal done, logged
            done += n
            reached = min(10, done * 10 // total)
            if reached > logged:
                logged = reached
                elapsed = _duration(self.clock() - started)
                self.write(f"{name}: {done / total:.0%} ({done:,}/{total:,}) in {elapsed}")

        return advance

    def close(self) -> None:
        """Log the end."""
        self.write("done")


@contextmanager
def training_events(enabled: bool) -> Iterator[ConsoleEvents | LogEvents | None]:
    """Progress bars on a terminal, log lines otherwise, or None when output is for scripts."""
    if not enabled:
        yield None
        return
    if not console.is_terminal:
        events = LogEvents()
        yield events
        events.close()
        return
    with make_progress() as progress:
        bars = ConsoleEvents(progress)
        yield bars
        bars.close()
