"""What reading one uploaded archive may cost: files, members of any kind, expanded bytes (read
or skipped alike), expansion over the upload's size, and seconds spent unpacking."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from shared import defaults
from shared.errors import PayloadTooLarge
from web.blocking import off_hub

T = TypeVar("T")
MAX_COMPRESSION_RATIO = 200  # real images barely compress; more than this is a bomb
# Tar padding and headers compress very well: a small archive is judged on bytes alone.
RATIO_GRACE_BYTES = 16 * 1024**2
# A file, its macOS `__MACOSX/._name` twin and a folder: what one image may bring along.
MEMBERS_PER_ENTRY = 3
# Entries unpacked in one trip to a thread: few enough, and quick enough, to hold little memory.
BATCH_ITEMS = 64
BATCH_SECONDS = 0.005


@dataclass(frozen=True)
class ArchiveLimits:
    """How much an archive may hold, and how long unpacking it may take."""

    max_entries: int
    max_entry_bytes: int
    max_total_bytes: int
    max_seconds: float = defaults.MAX_ARCHIVE_SECONDS  # when no clock is shared (UnpackClock)

    @property
    def max_members(self) -> int:
        """Members of any kind (folders and skipped ones too) the archive may list."""
        return self.max_entries * MEMBERS_PER_ENTRY


class UnpackClock:
    """Seconds spent unpacking, summed over every archive of one request, against a limit."""

    def __init__(self, max_seconds: float) -> None:
        self.max_seconds = max_seconds
        self._spent = 0.0  # seconds of the stretches already over
        self._since: float | None = None  # start of the stretch running now

    def check(self) -> None:
        """413 once unpacking has taken longer than the limit."""
        running = time.monotonic() - self._since if self._since is not None else 0.0
        if self._spent + running > self.max_seconds:
            raise PayloadTooLarge(
                f"unpacking the archive takes more than {self.max_seconds:g} s "
                f"(SKUAI_MAX_ARCHIVE_SECONDS); send smaller archives, or zip or gzip",
                code="archive_too_slow",
            )

    def timed(self, items: Iterator[T]) -> Iterator[T]:
        """`items`, produced off the gevent hub (web.blocking) so that a long unpack leaves the
        worker's other requests served, counting only the time spent producing them: the
        caller's work between two entries (checking and storing images) is not unpacking, nor
        is a wait for a free thread."""
        while True:
            batch, finished = off_hub(self._produce, items)
            yield from batch
            if finished:
                return

    def _produce(self, items: Iterator[T]) -> tuple[list[T], bool]:
        """The next entries, as many as one short stretch gives (a trip to a thread costs about
        80 µs: small entries travel together); True once there are no more."""
        batch: list[T] = []
        self._since = started = time.monotonic()
        try:
            while len(batch) < BATCH_ITEMS and time.monotonic() - started < BATCH_SECONDS:
                item = next(items, None)
                if item is None:
                    return batch, True
                batch.append(item)
                self.check()
            return batch, False
        finally:
            self._spent += time.monotonic() - started
            self._since = None


class ArchiveBudget:
    """Charges one archive's entries, members, expanded bytes and time against its limits."""

    def __init__(self, limits: ArchiveLimits, archive_bytes: int, clock: UnpackClock) -> None:
        self.limits = limits
        self.archive_bytes = max(archive_bytes, 1)
        self.clock = clock
        self.entries = 0
        self.members = 0
        self.expanded = 0

    def entry(self) -> None:
        """One more file to read (each becomes a job)."""
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise PayloadTooLarge(f"the archive has more than {self.limits.max_entries} entries")

    def member(self, count: int = 1) -> None:
        """`count` more members of any kind, skipped ones included."""
        self.members += count
        if self.members > self.limits.max_members:
            raise PayloadTooLarge(
                f"the archive lists more than {self.limits.max_members} members "
                f"(files, folders and skipped entries)"
            )
        self.clock.check()

    def expand(self, size: int) -> None:
        """`size` more bytes out of the decompressor, whether read or skipped."""
        self.expanded += size
        if self.expanded > self.limits.max_total_bytes:
            raise PayloadTooLarge(
                f"the archive expands to more than {self.limits.max_total_bytes} bytes"
            )
        if (
            self.expanded > RATIO_GRACE_BYTES
            and self.expanded > MAX_COMPRESSION_RATIO * self.archive_bytes
        ):
            raise PayloadTooLarge(
                f"the archive expands to more than {MAX_COMPRESSION_RATIO} times its size "
                f"(an archive bomb?)",
                code="archive_bomb",
            )
        self.clock.check()


class Readable(Protocol):
    """A byte stream (a decompressor, or the upload itself)."""

    def read(self, size: int = ..., /) -> bytes: ...


class MeteredReader(io.RawIOBase):
    """A decompressed stream that charges every byte it hands out to the budget."""

    def __init__(self, inner: Readable, budget: ArchiveBudget) -> None:
        super().__init__()
        self.inner = inner
        self.budget = budget

    def readable(self) -> bool:
        """Always: it is a reader."""
        return True

    def read(self, size: int = -1, /) -> bytes:
        """Up to `size` bytes, charged before they are handed out."""
        data = self.inner.read(size)
        self.budget.expand(len(data))
        return data

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        """`read` into `buffer`."""
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
