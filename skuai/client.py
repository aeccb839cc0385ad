"""SkuaiClient: a small HTTP client of the API, used by the demo and `skuai submit`."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

import requests

from shared.errors import SkuaiError


class ApiError(SkuaiError):
    """The API answered with an error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status} {code})", code=code)
        self.status = status


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
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with path.open("rb") as handle:
            files = {"image": (ref or path.name, handle, media_type)}
            data = {"metadata": _json(metadata)} if metadata else None
            return self._call("POST", "/v1/jobs", files=files, data=data)

    def job(self, job_id: str, *, wait: float = 0) -> dict[str, Any]:
        """GET /v1/jobs/{id}, long-polling up to `wait` seconds."""
        params = {"wait": f"{wait:g}"} if wait else None
        return self._call("GET", f"/v1/jobs/{job_id}", params=params, timeout=self.timeout + wait)

    def _call(
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
            try:
                error = response.json()["error"]
                raise ApiError(response.status_code, error["code"], error["message"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(response.status_code, "http_error", response.text[:200]) from None
        body: dict[str, Any] = response.json()
        return body


def _json(value: dict[str, Any]) -> str:
    import json

    return json.dumps(value)
