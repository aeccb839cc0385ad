"""Reading images and small fields out of requests, with limits checked before decoding."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flask import Request
from werkzeug.datastructures import FileStorage

from shared.errors import BadRequest, PayloadTooLarge

MAX_METADATA_BYTES = 4096
# No request of the API nests this deep; bounding it keeps the parser and every later
# serialisation of stored metadata clear of Python's recursion limit.
MAX_JSON_DEPTH = 32
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and small fields around one image


def check_request_size(request: Request, limit: int) -> None:
    """Refuse a request whose declared length is over `limit` before reading any of it."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the request is {request.content_length} bytes; at most {limit}")


def read_file(upload: FileStorage, limit: int) -> bytes:
    """Read an uploaded file, stopping as soon as it passes `limit` bytes."""
    data = upload.stream.read(limit + 1)
    if len(data) > limit:
        name = f" {upload.filename}" if upload.filename else ""
        raise PayloadTooLarge(f"the image{name} is over {limit} bytes")
    return data


def decode_base64(value: Any, limit: int) -> bytes:
    """Decode `image_base64`, refusing anything that is not strict base64 or is too large."""
    if not isinstance(value, str) or not value:
        raise BadRequest("image_base64 must be a non-empty base64 string")
    if len(value) > (limit * 4) // 3 + 4:
        raise PayloadTooLarge(f"the image is over {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("image_base64 is not valid base64") from None


def parse_metadata(value: Any) -> dict[str, Any]:
    """`metadata`: a small JSON object (given as an object, or as a JSON string in forms)."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise BadRequest("metadata must be a JSON object") from None
        except RecursionError:
            raise _too_deep("metadata") from None
    if not isinstance(value, dict):
        raise BadRequest("metadata must be a JSON object")
    if nests_deeper(value, MAX_JSON_DEPTH):
        raise _too_deep("metadata")
    if len(json.dumps(value)) > MAX_METADATA_BYTES:
        raise BadRequest(f"metadata is over {MAX_METADATA_BYTES} bytes of JSON")
    return value


def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong with it."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # not a ValueError, so `silent` lets it through
        raise _too_deep("the body") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    if nests_deeper(body, MAX_JSON_DEPTH):
        raise _too_deep("the body")
    return body


def nests_deeper(value: Any, limit: int) -> bool:
    """True when a parsed JSON value has containers more than `limit` levels deep (no recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth == limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _too_deep(what: str) -> BadRequest:
    return BadRequest(f"{what} nests JSON more than {MAX_JSON_DEPTH} levels deep")
