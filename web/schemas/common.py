"""Shapes every resource shares: the error body, metadata, callback URLs and uploaded files."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, PlainValidator, WithJsonSchema
from werkzeug.datastructures import FileStorage

from shared.errors import BadRequest
from shared.image_formats import ACCEPTED_NAMES
from shared.url_guard import MAX_URL_LENGTH
from web.uploads import MAX_JSON_DEPTH, MAX_METADATA_BYTES, parse_metadata

# The formats every image field takes (files, archive entries, base64 and fetched URLs alike).
IMAGE_DESCRIPTION = (
    f"{ACCEPTED_NAMES} (first frame of an animation, first page of a TIFF), recognised by content"
)
METADATA_DESCRIPTION = (
    f"a JSON object of at most {MAX_METADATA_BYTES} bytes, nested at most {MAX_JSON_DEPTH} "
    "levels deep; returned with every job"
)


class ErrorDetail(BaseModel):
    """What went wrong: a stable code and a sentence for people."""

    code: str
    message: str


class Error(BaseModel):
    """Every error the API answers: `{"error": {"code", "message"}}`."""

    error: ErrorDetail


def _blank_is_none(value: Any) -> Any:
    return value or None


def _uploaded_file(value: Any) -> FileStorage:
    if not isinstance(value, FileStorage):
        raise BadRequest("send each image or archive as a file part of a multipart/form-data body")
    return value


# Parsed by the one parser forms and JSON share, so the messages (and limits) are the same.
Metadata = Annotated[
    dict[str, Any],
    BeforeValidator(parse_metadata),
    Field(description=METADATA_DESCRIPTION),
]
# In a form the object comes as JSON text.
FormMetadata = Annotated[
    dict[str, Any],
    BeforeValidator(parse_metadata),
    WithJsonSchema({"type": "string", "description": METADATA_DESCRIPTION}),
]
# Checked against private addresses by the view, which knows the settings.
Url = Annotated[str, Field(max_length=MAX_URL_LENGTH, json_schema_extra={"format": "uri"})]
CallbackUrl = Annotated[
    # Blank means none (an empty form field), so the document allows "" beside a URL.
    Url | Annotated[str, Field(max_length=0)] | None,
    BeforeValidator(_blank_is_none),
    Field(
        description="http(s) URL that gets the job's or batch's final event, signed with the "
        "tenant's webhook secret; blank or null for none"
    ),
]
UploadedFile = Annotated[
    FileStorage,
    PlainValidator(_uploaded_file),
    WithJsonSchema({"type": "string", "format": "binary", "description": IMAGE_DESCRIPTION}),
]
