"""The blob store for image bytes: Redis keeps ids and state, the bytes wait here.

`open_blob_store(settings)` gives the backend SKUAI_BLOB_URL names: a folder (file://, the
default under SKUAI_HOME) or an S3-compatible bucket (s3://). Both implement `BlobStore`
(shared/blobs/store.py) and raise only BlobStoreUnavailable or BlobStoreFull when they refuse."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.blobs.files import FileBlobStore
from shared.blobs.store import BlobStore
from shared.blobs.url import FileLocation, parse_blob_url

if TYPE_CHECKING:
    from shared.settings import Settings

__all__ = ["BlobStore", "open_blob_store"]


def open_blob_store(settings: Settings) -> BlobStore:
    """The store SKUAI_BLOB_URL names; make one per process, after any fork (S3 clients hold
    connections)."""
    location = parse_blob_url(settings.blob_store_url)
    if isinstance(location, FileLocation):
        return FileBlobStore(location.root)
    from shared.blobs.s3 import S3BlobStore  # boto3 loads only where an s3:// URL is used

    return S3BlobStore(location, timeout=settings.blob_timeout)
