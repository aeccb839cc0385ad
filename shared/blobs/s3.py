"""The S3 backend: one object per blob under `s3://bucket/prefix`, on AWS or any S3-compatible
server (MinIO, SeaweedFS, GCS's S3 API, ...), through boto3.

Where the bucket is and who we are come from boto3's standard environment, as for any S3 client:
AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3) for a server other than AWS, AWS_REGION,
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile, or an instance role). Every request
may take SKUAI_BLOB_TIMEOUT to connect and to each read, and is tried at most twice, so an
unreachable store turns into BlobStoreUnavailable within a few timeouts, never a hang. S3 has no
multi-get or multi-put: those run on a few threads (boto3's clients are thread-safe)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.blobs.store import BlobStore, check_key
from shared.blobs.url import S3Location
from shared.errors import BlobStoreFull, BlobStoreUnavailable, ConfigError

log = logging.getLogger(__name__)
THREADS = 16  # requests in flight at once for one get_many / put_many
ATTEMPTS = 2  # the first try and one retry (botocore's "standard" mode, with jittered backoff)
DELETE_PAGE = 1000  # the most keys one DeleteObjects request takes
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
# What S3-compatible servers answer when they are out of space (AWS itself never is).
_FULL = frozenset({"XMinioStorageFull", "InsufficientStorage", "QuotaExceeded", "507"})
T = TypeVar("T")


class S3BlobStore(BlobStore):
    """Blobs as objects `prefix + key` in one bucket."""

    def __init__(self, location: S3Location, *, timeout: float) -> None:
        self.bucket = location.bucket
        self.prefix = location.prefix
        config = Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": ATTEMPTS, "mode": "standard"},
            max_pool_connections=THREADS,
        )
        try:
            self.client: Any = boto3.session.Session().client("s3", config=config)
        except (ValueError, BotoCoreError) as exc:  # e.g. a malformed AWS_ENDPOINT_URL
            raise ConfigError(f"cannot make an S3 client for {self.describe()}: {exc}") from None

    def describe(self) -> str:
        """The bucket and prefix as an s3:// URL."""
        return f"s3://{self.bucket}/{self.prefix}"

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """PUT each object, several at once; on a refusal, delete what this call wrote."""
        pairs = [(check_key(key), data) for key, data in items]
        try:
            self._each(lambda pair: self._put(*pair), pairs)
        except BlobStoreUnavailable:
            self._forget([key for key, _ in pairs])
            raise

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        """GET each object, several at once; None for a missing one."""
        return self._each(self._get, [check_key(key) for key in keys])

    def delete_many(self, keys: Iterable[str]) -> None:
        """DeleteObjects, a thousand keys a request (a missing key is not an error in S3)."""
        names = [self.prefix + check_key(key) for key in keys]
        for start in range(0, len(names), DELETE_PAGE):
            page = [{"Key": name} for name in names[start : start + DELETE_PAGE]]
            reply = self._call(
                "delete from",
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": page, "Quiet": True},
            )
            if errors := reply.get("Errors"):
                first = errors[0]
                raise _refused("delete from", self.describe(), first.get("Code", "?"), str(first))

    def list_old(
        self, cutoff: float, limit: int, prefix: str = "", start_after: str = ""
    ) -> list[tuple[str, float]]:
        """Objects under the prefix last modified before `cutoff`, from a listing in key order
        (a bucket lifecycle rule that expires old objects does the same without listing)."""
        before = datetime.fromtimestamp(cutoff, UTC)
        found: list[tuple[str, float]] = []
        where: dict[str, str] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        if start_after:
            where["StartAfter"] = self.prefix + check_key(start_after)
        pages = self.client.get_paginator("list_objects_v2").paginate(**where)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    if (written := item["LastModified"]) < before:
                        found.append((item["Key"][len(self.prefix) :], written.timestamp()))
                        if len(found) >= limit:
                            return found
        except (ClientError, BotoCoreError) as exc:
            raise _from_boto("list", self.describe(), exc) from None
        return found

    def check(self) -> None:
        """HEAD the bucket: it exists, answers, and takes our credentials."""
        self._call("reach", self.client.head_bucket, Bucket=self.bucket)

    def _put(self, key: str, data: bytes) -> None:
        self._call(
            "write to", self.client.put_object, Bucket=self.bucket, Key=self.prefix + key, Body=data
        )

    def _get(self, key: str) -> bytes | None:
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            return bytes(reply["Body"].read())
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise _from_boto("read from", self.describe(), exc) from None
        except BotoCoreError as exc:
            raise _from_boto("read from", self.describe(), exc) from None

    def _call(self, doing: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _from_boto(doing, self.describe(), exc) from None

    def _each(self, work: Callable[[Any], T], items: list[Any]) -> list[T]:
        """`work` on every item, on up to THREADS threads (one item: on this thread)."""
        if len(items) <= 1:
            return [work(item) for item in items]
        with ThreadPoolExecutor(min(THREADS, len(items))) as pool:
            return list(pool.map(work, items))

    def _forget(self, keys: list[str]) -> None:
        """Best effort: a failed batch of writes leaves none of its objects behind where the
        store still answers."""
        try:
            self.delete_many(keys)
        except BlobStoreUnavailable:
            log.warning("blob store: could not remove %d blobs after a failed write", len(keys))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _from_boto(doing: str, where: str, exc: ClientError | BotoCoreError) -> BlobStoreUnavailable:
    code = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    return _refused(doing, where, code, str(exc))


def _refused(doing: str, where: str, code: str, detail: str) -> BlobStoreUnavailable:
    """The store's error: full (507) for a server out of space, else 503. The details go to the
    log only: the message may reach an API client."""
    log.warning("blob store: cannot %s %s: %s", doing, where, detail)
    if code in _FULL:
        return BlobStoreFull(f"the blob store is full ({code}); retry later")
    return BlobStoreUnavailable(f"the blob store cannot {doing} its bucket ({code}); retry later")
