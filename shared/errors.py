"""One exception hierarchy for the whole service; the API maps it to the JSON error shape."""

from __future__ import annotations


class SkuaiError(Exception):
    """Base of every error the service raises on purpose."""

    code = "internal_error"
    http_status = 500
    retryable = False

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


class ModelNotFound(SkuaiError):
    """No model version is active, or the named version is missing."""

    code = "model_not_found"
    http_status = 503


class DatasetError(SkuaiError):
    """The training dataset is missing, empty or malformed."""

    code = "dataset_error"
