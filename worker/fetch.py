"""Fetching images that were submitted as URLs: size and time limits, no redirects, and the
SSRF guard on the address actually connected to."""

from __future__ import annotations

import requests

from shared.errors import FetchFailed
from shared.url_guard import guarded_session

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0


class ImageFetcher:
    """Downloads one image at a time with a guarded session (one per worker process)."""

    def __init__(self, *, max_bytes: int, allow_private: bool) -> None:
        self.max_bytes = max_bytes
        self.session = guarded_session(allow_private=allow_private)

    def fetch(self, url: str) -> bytes:
        """The body of `url`, or FetchFailed saying why."""
        try:
            with self.session.get(
                url, stream=True, allow_redirects=False, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)
            ) as response:
                if response.is_redirect:
                    raise FetchFailed(f"{url} redirects; redirects are not followed")
                if response.status_code != 200:
                    raise FetchFailed(f"{url} answered HTTP {response.status_code}")
                return self._read(response, url)
        except requests.RequestException as exc:
            raise FetchFailed(f"cannot fetch {url}: {_reason(exc)}") from None

    def _read(self, response: requests.Response, url: str) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchFailed(f"{url} is over {self.max_bytes} bytes")
        chunks, size = [], 0
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchFailed(f"{url} is over {self.max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _reason(exc: requests.RequestException) -> str:
    text = str(exc)
    if "non-global address" in text:
        return "it resolves to a private or reserved address"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return exc.__class__.__name__
