"""Reading request bodies: every body has a size limit (`request.max_content_length`: small for
JSON, larger where a view takes uploads), passing it is a 413 as soon as it happens — chunked bodies
included — a client that stops sending is a 408, and a long upload lets other requests run."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import IO, Any

from flask import Flask, current_app, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from shared.errors import PayloadTooLarge, RequestTimeout

WSGIApp = Any


class _ClientBody:
    """The server's input stream, counted against the request's limit while it is read."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes of the body."""
        return self._counted(self._stream.read, size)

    def readline(self, size: int = -1) -> bytes:
        """One line of the body."""
        return self._counted(self._stream.readline, size)

    def _counted(self, read: Any, size: int) -> bytes:
        # Under gevent this lets the other requests of the worker run between two reads of a
        # body that arrives faster than it is parsed; under threads it costs nothing.
        time.sleep(0)
        try:
            data: bytes = read(size)
        except TimeoutError:  # the server's per-read deadline (skuai.api_worker)
            raise RequestTimeout("the client stopped sending the request body") from None
        self._read += len(data)
        limit = request.max_content_length
        # Werkzeug reads a JSON body only up to the limit and would parse it cut short; one more
        # byte tells a body of exactly the limit from a longer (e.g. chunked) one.
        if limit is not None and self._read >= limit and (self._read > limit or self._more()):
            raise PayloadTooLarge(f"the request body is over {limit} bytes")
        return data

    def _more(self) -> bool:
        try:
            return bool(self._stream.read(1))
        except TimeoutError:
            raise RequestTimeout("the client stopped sending the request body") from None


class BodyReading:
    """WSGI middleware that puts `_ClientBody` between the server and the app."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """Serve one request with its body wrapped."""
        environ["wsgi.input"] = _ClientBody(environ["wsgi.input"])
        return self.app(environ, start_response)


def _declared_too_large(exc: RequestEntityTooLarge) -> ResponseReturnValue:
    """Werkzeug's 413 (a Content-Length over the limit, or too many form parts) in the API's
    error shape, with a message that says which."""
    limit, length = request.max_content_length, request.content_length
    if limit is not None and length is not None and length > limit:
        message = f"the request body is {length} bytes; at most {limit}"
    else:
        message = exc.description or "the request is too large"
    return current_app.handle_user_exception(PayloadTooLarge(message))


def limit_bodies(app: Flask, json_limit: int) -> None:
    """Every body of `app` at most `json_limit` bytes unless its view allows more."""
    app.config["MAX_CONTENT_LENGTH"] = json_limit
    app.wsgi_app = BodyReading(app.wsgi_app)  # type: ignore[method-assign]
    app.register_error_handler(RequestEntityTooLarge, _declared_too_large)
