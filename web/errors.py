"""Every error leaves the API as `{"error": {"code", "message"}}` with the right status."""

from __future__ import annotations

import logging
import re

import redis
from flask import Flask, Response, jsonify
from kombu.exceptions import OperationalError
from werkzeug.exceptions import HTTPException

from shared.errors import ServiceUnavailable, SkuaiError, TooManyRequests, Unauthorized

log = logging.getLogger(__name__)
RETRY_AFTER_UNAVAILABLE = "5"
# Replies with which Redis refuses writes for a while (redis-py names the first two, also when a
# script's write is refused): full under noeviction, a replica after a failover, a failed save.
REFUSALS = {
    "OOM": "is out of memory",
    "READONLY": "is read-only (failing over)",
    "MISCONF": "cannot save to disk",
}
_REFUSAL = re.compile(r"(?:^|: -)(OOM|READONLY|MISCONF) ")
# The service's own names for statuses Werkzeug raises itself (e.g. over MAX_CONTENT_LENGTH).
HTTP_CODES = {413: "payload_too_large", 415: "unsupported_media_type"}


def error_response(error: SkuaiError, status: int | None = None) -> Response:
    """The JSON error body of `error`, with its status (or `status`, for HTTP errors)."""
    response = jsonify({"error": error.to_dict()})
    response.status_code = status or error.http_status
    return response


def register_error_handlers(app: Flask) -> None:
    """Map the service's errors, HTTP errors and dependency failures to the JSON error shape."""

    @app.errorhandler(SkuaiError)
    def _service_error(exc: SkuaiError) -> Response:
        response = error_response(exc)
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after)
        elif exc.retryable:
            response.headers["Retry-After"] = RETRY_AFTER_UNAVAILABLE
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = 'Bearer realm="skuai"'
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = HTTP_CODES.get(exc.code or 500) or (exc.name or "error").lower().replace(" ", "_")
        error = SkuaiError(exc.description or exc.name, code=code)
        response = error_response(error, exc.code or 500)
        if exc.code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    @app.errorhandler(OperationalError)
    def _redis_down(exc: Exception) -> Response:
        log.warning("Redis unavailable: %s", exc)
        return _service_error(ServiceUnavailable("the job store is unavailable; retry shortly"))

    @app.errorhandler(redis.ResponseError)
    def _redis_refused(exc: redis.ResponseError) -> Response:
        if (reason := _refusal(exc)) is None:
            return _unexpected(exc)
        log.warning("Redis refused a write: %s", exc)
        return _service_error(ServiceUnavailable(f"the job store {reason}; retry shortly"))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(SkuaiError("an internal error occurred"))


def _refusal(exc: redis.ResponseError) -> str | None:
    """Why Redis refuses writes for now (a 503 worth retrying), or None for any other reply."""
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return REFUSALS["OOM"]
    if isinstance(exc, redis.exceptions.ReadOnlyError):
        return REFUSALS["READONLY"]
    # A reply of its own ("MISCONF ...") or inside a script's error ("Error running script
    # ...: -OOM command not allowed ...").
    found = _REFUSAL.search(str(exc))
    return REFUSALS[found.group(1)] if found else None
