"""Fetching images that were submitted as URLs: size and time limits, no redirects, and the
SSRF guard on the address actually connected to. A fetched image is then kept in the blob store
as an upload is (`images/<job id>`): Redis never holds its bytes, a rerun of its job (a crash, a
result lost in a failover) reads it there instead of fetching again, and the sweeper deletes it
once its job is final."""

from __future__ import annotations

import requests

from shared.errors import FetchFailed
from shared.job_store import JobStore
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

    def fetch_into(self, store: JobStore, job_id: str, url: str) -> bytes | FetchFailed:
        """The body of `url`, stored as the job's image, or the FetchFailed that replaces it. A
        store that refuses the write raises BlobStoreUnavailable: the chunk is retried."""
        try:
            data = self.fetch(url)
        except FetchFailed as exc:
            return exc
        store.stash_image(job_id, data)
        return data

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
