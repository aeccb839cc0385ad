"""SKUAI_BLOB_URL's two forms, parsed once: `file:///absolute/path` (a folder on this host or a
volume every process mounts) and `s3://bucket[/prefix]` (an S3-compatible bucket; the endpoint,
region and keys come from boto3's standard AWS_* variables, as for any S3 client)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from shared.errors import InvalidArgument

EXPECTED = "expected file:///absolute/path or s3://bucket[/prefix]"
# S3's rules for new buckets (no dots next to each other or to a hyphen are checked by S3 itself).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class FileLocation:
    """A folder for the file backend."""

    root: Path


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix ('' or ending in '/') for the S3 backend."""

    bucket: str
    prefix: str


def parse_blob_url(url: str) -> FileLocation | S3Location:
    """The location `url` names; InvalidArgument with one line saying what is wrong."""
    parsed = urlparse(url.strip())
    if parsed.scheme == "file":
        return _file(parsed.netloc, parsed.path, parsed.query or parsed.fragment)
    if parsed.scheme == "s3":
        return _s3(parsed.netloc, parsed.path, parsed.query or parsed.fragment)
    raise InvalidArgument(EXPECTED)


def check_blob_url(raw: str | None) -> str | None:
    """file:///absolute/path or s3://bucket[/prefix]"""
    if raw is not None:
        parse_blob_url(raw)
    return raw


def _file(host: str, path: str, extra: str) -> FileLocation:
    if host not in ("", "localhost") or not path.startswith("/"):
        raise InvalidArgument(f"{EXPECTED}: a file URL needs an absolute path (three slashes)")
    if extra:
        raise InvalidArgument(f"{EXPECTED}: a file URL takes no query or fragment")
    return FileLocation(Path(unquote(path)))


def _s3(bucket: str, path: str, extra: str) -> S3Location:
    if "@" in bucket:  # not echoed: it may hold a secret key
        raise InvalidArgument(f"{EXPECTED}: keys go in AWS_ACCESS_KEY_ID, not the URL")
    if ":" in bucket:
        raise InvalidArgument(f"{EXPECTED}: a server and port go in AWS_ENDPOINT_URL")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise InvalidArgument(
            f"{EXPECTED}: {bucket!r} is not a bucket name (3-63 lowercase letters, digits, "
            "dots and hyphens)"
        )
    if extra:
        raise InvalidArgument(f"{EXPECTED}: an s3 URL takes no query or fragment")
    parts = [part for part in path.split("/") if part]
    if not all(_PREFIX_PART.fullmatch(part) for part in parts):
        raise InvalidArgument(
            f"{EXPECTED}: the prefix {path!r} may hold letters, digits, '.', '_' and '-' "
            "between slashes"
        )
    return S3Location(bucket, "".join(f"{part}/" for part in parts))
