"""Waiting for something to become true, and asking whether a URL answers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests


def wait_until(
    predicate: Callable[[], object], timeout: float, what: str, log: Path | None = None
) -> None:
    """Poll `predicate()` until true; fail with the process log on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    pytest.fail(f"{what} did not happen within {timeout:.0f} s\n{tail}")


def answers(
    url: str,
    status: int = 200,
    timeout: float = 2.0,
    session: requests.Session | None = None,
) -> bool:
    """True when a GET of `url` answers `status` within `timeout` seconds."""
    try:
        return (session or requests).get(url, timeout=timeout).status_code == status
    except requests.RequestException:
        return False
