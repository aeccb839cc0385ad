"""Batches over the session's API: waiting for one to end, and reading all its results."""

from __future__ import annotations

import time

import pytest

from tests.support.http import http


def wait_for_batch(api_url: str, batch_id: str, timeout: float = 60) -> dict:
    """The batch once it is completed or canceled; fail if it is not within `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch: dict = http.get(f"{api_url}/v1/batches/{batch_id}", timeout=10).json()
        if batch["status"] in ("completed", "canceled"):
            return batch
        time.sleep(0.2)
    pytest.fail(f"batch {batch_id} did not complete: {batch}")


def batch_results(api_url: str, batch_id: str, limit: int = 100) -> list[dict]:
    """Every result of a batch, read `limit` a page."""
    items: list[dict] = []
    cursor = "0"
    while cursor is not None:
        page = http.get(
            f"{api_url}/v1/batches/{batch_id}/results",
            params={"cursor": cursor, "limit": limit},
            timeout=10,
        ).json()
        items += page["items"]
        cursor = page["next_cursor"]
    return items
