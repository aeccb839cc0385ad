"""The blob store's interface: image bytes (and, later, exported results) by key, so that Redis
holds ids and state only. Two backends implement it: shared/blobs/files.py and shared/blobs/s3.py.

Every refused read or write raises BlobStoreUnavailable (503, retry) or its BlobStoreFull (507),
never a backend's own error, so the API answers with the error shape and `Retry-After`."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable

from shared.errors import InvalidArgument

MAX_KEY_LENGTH = 512
IMAGES = "images/"  # uploaded images, by job id: the orphan sweep looks only here
# Segments of letters, digits, '.', '_' and '-', each starting with a letter or digit: no '..',
# no hidden files, nothing a shell, a URL or S3 treats specially; '/' separates segments.
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*")


def check_key(key: str) -> str:
    """`key` when it is a safe blob key; InvalidArgument otherwise (a caller's bug)."""
    if len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise InvalidArgument(f"{key[:80]!r} is not a blob key")
    return key


def image_key(job_id: str) -> str:
    """The key of a job's uploaded image."""
    return IMAGES + job_id


class BlobStore(ABC):
    """Bytes by key. Writes are whole (a reader sees all of a blob or none of it); deleting a
    key that is not there is not an error."""

    @abstractmethod
    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store every (key, bytes); if one write is refused, remove what this call wrote (as far
        as the store lets us) and raise BlobStoreUnavailable or BlobStoreFull."""

    @abstractmethod
    def get_many(self, keys: list[str]) -> list[bytes | None]:
        """Each key's bytes, in order; None where there is no such blob."""

    @abstractmethod
    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove these blobs."""

    @abstractmethod
    def list_old(
        self, cutoff: float, limit: int, prefix: str = "", start_after: str = ""
    ) -> list[tuple[str, float]]:
        """Up to `limit` (key, when written) of the blobs whose key starts with `prefix` written
        before `cutoff` (epoch seconds), in an order that does not change, from just after the
        key `start_after` ('': from the first): the orphan sweep pages through a store of any
        size with it, and deletes those nothing refers to any more."""

    def older_than(self, cutoff: float, limit: int, prefix: str = "") -> list[str]:
        """The keys of the first `limit` blobs `list_old` gives."""
        return [key for key, _ in self.list_old(cutoff, limit, prefix)]

    @abstractmethod
    def check(self) -> None:
        """Raise BlobStoreUnavailable (or BlobStoreFull) unless a write would succeed now."""

    @abstractmethod
    def describe(self) -> str:
        """Where the blobs are, for logs and messages (no secrets)."""

    def put(self, key: str, data: bytes) -> None:
        """Store one blob."""
        self.put_many([(key, data)])

    def get(self, key: str) -> bytes | None:
        """One blob's bytes, or None."""
        return self.get_many([key])[0]

    def delete(self, key: str) -> None:
        """Remove one blob."""
        self.delete_many([key])
