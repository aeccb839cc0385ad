"""Failpoints: fault injection for the reliability tests only, read once when a worker app is
built (a bad value stops the worker with one line, as a bad setting does). Never set in
production."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared.errors import ConfigError

PREFIX = "SKUAI_FAILPOINT_"
_REFS = re.compile(r"[^,:]+(:[0-9]+)?(,[^,:]+(:[0-9]+)?)*")


@dataclass(frozen=True)
class Failpoints:
    """Which faults this worker injects."""

    # Each pool process takes this many seconds longer to start (as TensorFlow does on a busy
    # machine).
    slow_start: float = 0.0
    # The process dies (as on a decoder crash) when it starts a chunk holding an image with one
    # of these refs: "ref" every time, "ref:N" the first N times (counted in Redis).
    crash_on_ref: str | None = None
    # The first N chunks to finish their jobs meet a Redis error before their events are sent.
    blip_after_finish: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Failpoints:
        """The failpoints set in `environ`; ConfigError (one line) for a bad value."""
        slow = environ.get(PREFIX + "SLOW_START", "0")
        refs = environ.get(PREFIX + "CRASH_ON_REF") or None
        blips = environ.get(PREFIX + "BLIP_AFTER_FINISH", "0")
        return cls(
            slow_start=_seconds(PREFIX + "SLOW_START", slow),
            crash_on_ref=_refs(PREFIX + "CRASH_ON_REF", refs),
            blip_after_finish=_count(PREFIX + "BLIP_AFTER_FINISH", blips),
        )


def _seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name}={raw!r} is invalid: expected seconds, 0 or more")
    return value


def _refs(name: str, raw: str | None) -> str | None:
    if raw is not None and not _REFS.fullmatch(raw):
        raise ConfigError(f"{name}={raw!r} is invalid: expected ref or ref:N, comma-separated")
    return raw


def _count(name: str, raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()):
        raise ConfigError(f"{name}={raw!r} is invalid: expected a whole number, 0 or more")
    return int(raw)
