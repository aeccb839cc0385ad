"""JSON schemas of the OpenAPI description: jobs, batches, errors."""

from __future__ import annotations

from shared.jobs import CANCELED, FAILED, QUEUED, RUNNING, SUCCEEDED

ERROR_BODY = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
}
ERROR = {"type": "object", "required": ["error"], "properties": {"error": ERROR_BODY}}
LABEL = {
    "type": "object",
    "properties": {"label": {"type": "string"}, "confidence": {"type": "number"}},
}
RESULT = {
    "type": ["object", "null"],
    "properties": {
        "model": LABEL,
        "sku": LABEL,
        "candidates": {
            "type": "array",
            "maxItems": 5,
            "items": {
                "type": "object",
                "properties": {
                    "model": {"type": "string"},
                    "sku": {"type": "string"},
                    "confidence": {"type": "number"},
                },
            },
        },
    },
}
NULLABLE_STRING = {"type": ["string", "null"]}
JOB = {
    "type": "object",
    "required": ["id", "status", "created_at"],
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": [QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED]},
        "batch_id": NULLABLE_STRING,
        "ref": NULLABLE_STRING,
        "created_at": {"type": "string", "format": "date-time"},
        "finished_at": NULLABLE_STRING,
        "model_version": NULLABLE_STRING,
        "metadata": {"type": "object"},
        "result": RESULT,
        "error": {"type": ["object", "null"], "properties": ERROR_BODY["properties"]},
    },
}


COUNTS = {
    "type": "object",
    "properties": {s: {"type": "integer"} for s in (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED)},
}
BATCH = {
    "type": "object",
    "required": ["id", "status", "total", "counts", "created_at"],
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": [QUEUED, RUNNING, "completed", CANCELED]},
        "total": {"type": "integer"},
        "counts": COUNTS,
        "created_at": {"type": "string", "format": "date-time"},
        "finished_at": NULLABLE_STRING,
        "model_version": NULLABLE_STRING,
        "metadata": {"type": "object"},
    },
}
RESULTS_PAGE = {
    "type": "object",
    "required": ["items", "next_cursor"],
    "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
        "next_cursor": NULLABLE_STRING,
    },
}
WEBHOOK = {
    "type": "object",
    "required": ["id", "url", "events", "status"],
    "properties": {
        "id": {"type": "string"},
        "url": {"type": "string"},
        "events": {"type": "array", "items": {"type": "string"}},
        "status": {"type": "string", "enum": ["active", "disabled"]},
        "disabled_reason": NULLABLE_STRING,
        "created_at": {"type": "string"},
        "secret": {"type": "string", "description": "only in the answer to the creation"},
    },
}
SCHEMAS = {
    "Webhook": WEBHOOK,
    "Error": ERROR,
    "Job": JOB,
    "Batch": BATCH,
    "ResultsPage": RESULTS_PAGE,
}
