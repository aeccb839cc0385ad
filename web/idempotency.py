"""`Idempotency-Key` on batch uploads: the key as sent (never cut short), and a fingerprint of the
request so that the key reused with other content is refused instead of replayed."""

from __future__ import annotations

import hashlib
import json
from typing import IO, Any

from flask import Request

from shared.errors import BadRequest
from web.blocking import off_hub

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255  # as Stripe; a longer key is refused, since cutting it makes keys collide
HASH_BLOCK = 1024 * 1024


def idempotency_key(request: Request) -> str | None:
    """The request's key, or None without one; 400 when it is too long to keep whole."""
    key = request.headers.get(HEADER)
    if not key:
        return None
    if len(key) > MAX_KEY_LENGTH:
        raise BadRequest(
            f"{HEADER} is {len(key)} characters long; at most {MAX_KEY_LENGTH} are accepted"
        )
    return key


def request_fingerprint(request: Request, json_body: Any | None) -> str:
    """SHA-256 of what the request asks for: the JSON body, or the form fields and every file's
    field, name and bytes in order. A retry of the same upload gets the same fingerprint even
    though its multipart boundary changes."""
    digest = hashlib.sha256()
    if json_body is not None:
        _part(digest, b"json", json.dumps(json_body, sort_keys=True).encode())
        return digest.hexdigest()
    for name, value in sorted(request.form.items(multi=True)):
        _part(digest, name.encode(), value.encode())
    for name, upload in request.files.items(multi=True):
        _part(digest, name.encode(), (upload.filename or "").encode())
        # Off the hub: hashing a large upload would hold up the worker's other requests.
        _part(digest, b"bytes", off_hub(_stream_digest, upload.stream))
    return digest.hexdigest()


def _part(digest: Any, name: bytes, value: bytes) -> None:
    # Lengths first, so that no two different sequences of parts hash alike.
    digest.update(b"%d:%s%d:%s" % (len(name), name, len(value), value))


def _stream_digest(stream: IO[bytes]) -> bytes:
    stream.seek(0)
    digest = hashlib.sha256()
    while block := stream.read(HASH_BLOCK):
        digest.update(block)
    stream.seek(0)  # the upload is read again to take its images
    return digest.digest()
