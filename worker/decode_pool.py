"""The decode pool: each inference worker process decodes images on threads sized to the cores
it may use, so that a pass of images is decoded in parallel while the model runs the one before.

Threads, not processes: Pillow releases the GIL while it decodes and resizes, and the pixels
then need no copy between processes. The pool is made after the fork, in the process that uses
it (worker/runtime.py), as threads do not survive a fork."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from shared.errors import InvalidImage, SkuaiError
from shared.images import decode

Item = TypeVar("Item")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def decode_threads(configured: int) -> int:
    """Threads for the pool: `configured` (SKUAI_DECODE_THREADS) if set, else one per core."""
    return configured if configured > 0 else usable_cores()


@dataclass
class Decoded(Generic[Item]):
    """One pass of images decoded: the items ready for the model, their pixels, the failures
    (each with its error's dict), and the seconds spent decoding it, all threads together."""

    ready: list[Item] = field(default_factory=list)
    pixels: list[np.ndarray] = field(default_factory=list)
    failures: list[tuple[Item, dict[str, str]]] = field(default_factory=list)
    seconds: float = 0.0


class DecodePool:
    """A fixed set of decoding threads, shared by every chunk this process runs."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, threads)
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="decode")
        self._started = False

    def _start(self) -> None:
        """Start every thread now (an executor starts them one by one, as work outgrows the
        idle ones; a pass should find them all there). A barrier keeps each one busy until
        all exist."""
        barrier = threading.Barrier(self.threads)
        for waiting in [self._executor.submit(barrier.wait) for _ in range(self.threads)]:
            waiting.result()
        self._started = True

    def submit(
        self,
        items: Sequence[Item],
        data: Sequence[bytes | SkuaiError],
        *,
        size: int,
        max_pixels: int,
    ) -> PendingPass[Item]:
        """Start decoding one pass (its images spread over the threads)."""
        if not self._started:
            self._start()
        step = max(1, -(-len(items) // self.threads))  # ceil: one slice per thread
        return PendingPass(
            [
                self._executor.submit(
                    _decode_part, items[i : i + step], data[i : i + step], size, max_pixels
                )
                for i in range(0, len(items), step)
            ]
        )

    def close(self) -> None:
        """Stop the threads once any running decode is done (the process is stopping)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class PendingPass(Generic[Item]):
    """A pass being decoded; `result()` waits for it, the items in their order."""

    def __init__(self, parts: list[Future[Decoded[Item]]]) -> None:
        self._parts = parts

    def result(self) -> Decoded[Item]:
        """The whole pass, once every slice is decoded (an unexpected error is raised here)."""
        joined: Decoded[Item] = Decoded()
        for part in self._parts:
            done = part.result()
            joined.ready += done.ready
            joined.pixels += done.pixels
            joined.failures += done.failures
            joined.seconds += done.seconds
        return joined


def _decode_part(
    items: Sequence[Item], data: Sequence[bytes | SkuaiError], size: int, max_pixels: int
) -> Decoded[Item]:
    """Decode a slice of a pass on one thread; each image fails or succeeds on its own."""
    began = time.perf_counter()
    decoded: Decoded[Item] = Decoded()
    for item, raw in zip(items, data, strict=True):
        try:
            if isinstance(raw, SkuaiError):
                raise raw
            decoded.pixels.append(decode(raw, size=size, max_pixels=max_pixels))
            decoded.ready.append(item)
        except SkuaiError as exc:  # InvalidImage, UnsupportedMediaType, FetchFailed...
            decoded.failures.append((item, exc.to_dict()))
        except MemoryError:
            error = InvalidImage("the image needs too much memory")
            decoded.failures.append((item, error.to_dict()))
    decoded.seconds = time.perf_counter() - began
    return decoded
