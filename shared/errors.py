"""One exception hierarchy for the whole service; the API maps it to the JSON error shape, failed
jobs store its `to_dict()`, and `retryable` decides whether a worker task retries (when, and for
how long: worker/retry_policy.py). Every error web/, worker/, shared/ and training/ raise is one
of these (tests/test_errors.py checks)."""

from __future__ import annotations


class SkuaiError(Exception):
    """Base of every error the service raises on purpose."""

    code = "internal_error"
    http_status = 500
    retryable = False  # True: the condition passes by itself, so waiting and retrying helps

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, str]:
        """The `{"code", "message"}` body used by the API and stored on failed jobs."""
        return {"code": self.code, "message": self.message}


class ConfigError(SkuaiError):
    """A setting or command-line value is invalid."""

    code = "config_error"


class InvalidArgument(SkuaiError, ValueError):
    """A value passed to a function is out of its range; a ValueError too, as callers expect."""

    code = "invalid_argument"


class BadRequest(SkuaiError):
    """The request is malformed (missing field, bad JSON, bad parameter)."""

    code = "bad_request"
    http_status = 400


class Unauthorized(SkuaiError):
    """No API key, or one that is unknown or revoked."""

    code = "unauthorized"
    http_status = 401


class Forbidden(SkuaiError):
    """The caller may not see this resource from where it calls."""

    code = "forbidden"
    http_status = 403


class TooManyRequests(SkuaiError):
    """A rate limit or the queue limit: retry after `retry_after` seconds."""

    code = "too_many_requests"
    http_status = 429
    retryable = True

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, round(retry_after))


class NotFound(SkuaiError):
    """The resource does not exist or belongs to another tenant."""

    code = "not_found"
    http_status = 404


class Conflict(SkuaiError):
    """The resource is in a state that does not allow the operation."""

    code = "conflict"
    http_status = 409


class IdempotencyKeyReused(SkuaiError):
    """An Idempotency-Key sent again with a different request: replaying would lose the new one."""

    code = "idempotency_key_reused"
    http_status = 422


class InvalidLabel(SkuaiError):
    """A correction names a label the job's catalog lacks (or a new label without saying so)."""

    code = "invalid_label"
    http_status = 422


class RequestTimeout(SkuaiError):
    """The client stopped sending its request body for the client timeout."""

    code = "request_timeout"
    http_status = 408


class PayloadTooLarge(SkuaiError):
    """The request or one image is over its size limit."""

    code = "payload_too_large"
    http_status = 413


class UnsupportedMediaType(SkuaiError):
    """The upload is a format the service does not accept."""

    code = "unsupported_media_type"
    http_status = 415


class InvalidImage(SkuaiError):
    """The bytes are not a decodable image (truncated, fake, bomb, ...)."""

    code = "invalid_image"
    http_status = 422


class ServiceUnavailable(SkuaiError):
    """A dependency (Redis) is unreachable; the caller may retry."""

    code = "service_unavailable"
    http_status = 503
    retryable = True


class BlobStoreUnavailable(ServiceUnavailable):
    """The blob store refused or could not take a read or write (read-only, unreachable,
    denied); every backend's failure is this, so callers catch one class."""


class BlobStoreFull(BlobStoreUnavailable):
    """The blob store is out of space (507): retrying helps once space is freed."""

    code = "insufficient_storage"
    http_status = 507


class ModelNotFound(SkuaiError):
    """No model version is active yet: workers wait (retry) until one is activated."""

    code = "model_not_found"
    http_status = 503
    retryable = True


class VersionNotFound(ModelNotFound):
    """A named model version does not exist; waiting will not bring it back."""

    http_status = 404
    retryable = False


class FetchFailed(SkuaiError):
    """An image URL could not be fetched; its job fails with this error."""

    code = "fetch_failed"


class ImageExpired(SkuaiError):
    """An uploaded image expired before a worker took its job."""

    code = "image_expired"


class PoisonMessage(SkuaiError):
    """An image stopped a worker too many times; its job is given up."""

    code = "poison_message"


class InferenceFailed(SkuaiError):
    """The model raised on a chunk; its jobs fail (details only in the worker log)."""

    code = "internal_error"


class RetrainFailed(SkuaiError):
    """A retrain triggered by corrections could not finish; the message says why."""

    code = "retrain_failed"


class JobCanceled(SkuaiError):
    """The job was canceled by its tenant."""

    code = "canceled"
    http_status = 409


class ArchiveEntryRefused(SkuaiError):
    """One entry of an uploaded archive is not read; its job fails, the rest go on."""

    code = "archive_entry_refused"
    http_status = 422


class UnsafePath(ArchiveEntryRefused):
    """The entry's path is absolute or escapes the archive."""

    code = "unsafe_path"


class NestedArchive(ArchiveEntryRefused):
    """The entry is itself an archive; archives are opened one level deep."""

    code = "nested_archive"


class ZipBomb(ArchiveEntryRefused):
    """The entry expands far more than real images do."""

    code = "zip_bomb"


class CorruptEntry(ArchiveEntryRefused):
    """The entry cannot be extracted (or the archive ends inside it)."""

    code = "corrupt_entry"


class UnsupportedEntry(ArchiveEntryRefused):
    """The entry is a link or a special file."""

    code = "unsupported_entry"


class DatasetError(SkuaiError):
    """The training dataset is missing, empty or malformed."""

    code = "dataset_error"
