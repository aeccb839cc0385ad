"""Resident memory of a process tree, sampled over time (Linux /proc; no extra dependency)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def rss_mib(root: int) -> float:
    """Total resident memory of the tree, in MiB."""
    total_kib = 0
    for pid in tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


@dataclass
class MemorySampler:
    """Samples the RSS of named process trees every `interval` seconds in a thread."""

    roots: dict[str, int]
    interval: float = 1.0
    samples: dict[str, list[float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> MemorySampler:
        self.samples = {name: [] for name in self.roots}
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.roots.items():
                self.samples[name].append(rss_mib(pid))
            time.sleep(self.interval)

    def summary(self) -> dict[str, dict[str, float]]:
        """RSS per tree (MiB) at the start, once warm (a fifth of the way), at the end, and the
        peak: flat memory means end ≈ warm (the first chunks allocate TensorFlow's buffers)."""
        return {
            name: {"start": s[0], "warm": s[len(s) // 5], "end": s[-1], "peak": max(s)}
            for name, s in self.samples.items()
            if s
        }
