"""SkuaiClient: a small HTTP client of the API, used by the demo and `skuai submit`."""

from __future__ import annotations

import json
import mimetypes
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import requests

from shared.errors import SkuaiError

T = TypeVar("T")
RETRIES = 6
MAX_RETRY_WAIT = 30.0


class ApiError(SkuaiError):
    """The API answered with an error body."""

    def __init__(
        self, status: int, code: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{message} (HTTP {status} {code})", code=code)
        self.status = status
        self.retry_after = retry_after


class SkuaiClient:
    """Talks to one API base URL, optionally with an API key."""

    def __init__(self, base_url: str, *, key: str | None = None, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"
        self.timeout = timeout

    def submit_image(
        self, path: Path, *, ref: str | None = None, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """POST /v1/jobs with the file as multipart `image`; returns the queued job."""

        def once() -> dict[str, Any]:
            with path.open("rb") as handle:
                files = {"image": (ref or path.name, handle, _media_type(path))}
                data = {"metadata": _json(metadata)} if metadata else None
                return self._call("POST", "/v1/jobs", files=files, data=data)

        return retrying(once)

    def create_batch(
        self,
        images: list[tuple[str, Path]],
        *,
        archive: Path | None = None,
        idempotency_key: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """POST /v1/batches with files (ref, path) and/or one archive; returns the batch."""
        return retrying(lambda: self._create_batch(images, archive, idempotency_key, metadata))

    def _create_batch(
        self,
        images: list[tuple[str, Path]],
        archive: Path | None,
        idempotency_key: str | None,
        metadata: dict[str, Any] | None,
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        with ExitStack() as stack:
            files = [
                ("images", (ref, stack.enter_context(path.open("rb")), _media_type(path)))
                for ref, path in images
            ]
            if archive is not None:
                files.append(
                    (
                        "archive",
                        (
                            archive.name,
                            stack.enter_context(archive.open("rb")),
                            "application/octet-stream",
                        ),
                    )
                )
            data = {"metadata": _json(metadata)} if metadata else None
            return self._call("POST", "/v1/batches", files=files, data=data, headers=headers)

    def batch(self, batch_id: str) -> dict[str, Any]:
        """GET /v1/batches/{id}."""
        return self._call("GET", f"/v1/batches/{batch_id}")

    def results(self, batch_id: str, decisions: list[str] | None = None) -> list[dict[str, Any]]:
        """Every job of a batch (with `decisions`: its succeeded jobs with one of them),
        following the cursor page by page."""
        items: list[dict[str, Any]] = []
        cursor: str | None = "0"
        while cursor is not None:
            params = {"cursor": cursor, "limit": 1000, **_decision_filter(decisions)}
            page = self._call("GET", f"/v1/batches/{batch_id}/results", params=params)
            items += page["items"]
            cursor = page["next_cursor"]
        return items

    def export(
        self, batch_id: str, media_type: str, decisions: list[str] | None = None
    ) -> Iterator[bytes]:
        """Stream a batch's results as text/csv or application/x-ndjson (with `decisions`: its
        succeeded jobs with one of them)."""
        try:
            response = self.session.get(
                f"{self.base_url}/v1/batches/{batch_id}/results",
                params=_decision_filter(decisions),
                headers={"Accept": media_type},
                stream=True,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise SkuaiError(
                f"cannot reach the API at {self.base_url}: {exc}", code="unreachable"
            ) from None
        with response:
            if response.status_code >= 400:
                raise ApiError(response.status_code, "http_error", response.text[:200])
            yield from response.iter_content(64 * 1024)

    def job(self, job_id: str, *, wait: float = 0) -> dict[str, Any]:
        """GET /v1/jobs/{id}, long-polling up to `wait` seconds."""
        params = {"wait": f"{wait:g}"} if wait else None
        return self._call("GET", f"/v1/jobs/{job_id}", params=params, timeout=self.timeout + wait)

    def _call(
        self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        if "files" in kwargs:  # open files are consumed: their callers retry with fresh ones
            return self._call_once(method, path, timeout=timeout, **kwargs)
        return retrying(lambda: self._call_once(method, path, timeout=timeout, **kwargs))

    def _call_once(
        self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        try:
            response = self.session.request(
                method, self.base_url + path, timeout=timeout or self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise SkuaiError(
                f"cannot reach the API at {self.base_url}: {exc}", code="unreachable"
            ) from None
        if response.status_code >= 400:
            retry_after = _seconds(response.headers.get("Retry-After"))
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http_error", "message": response.text[:200]}
            raise ApiError(response.status_code, error["code"], error["message"], retry_after)
        body: dict[str, Any] = response.json()
        return body


def retrying(call: Callable[[], T], attempts: int = RETRIES) -> T:
    """Run `call`, waiting out 429 and 503 answers as their Retry-After says (bounded)."""
    for _ in range(attempts - 1):
        try:
            return call()
        except ApiError as exc:
            if exc.status not in (429, 503):
                raise
            time.sleep(min(MAX_RETRY_WAIT, exc.retry_after or 1.0))
    return call()


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _decision_filter(decisions: list[str] | None) -> dict[str, str]:
    """The `decision` query parameter (none without decisions)."""
    return {"decision": ",".join(decisions)} if decisions else {}


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value)


def _media_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"
