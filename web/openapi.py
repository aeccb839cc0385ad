"""The OpenAPI description of the API (`/openapi.json`), written by hand to match the routes."""

from __future__ import annotations

from typing import Any

from shared import defaults
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


def _error_responses(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Bad request",
        404: "Not found",
        413: "Too large",
        415: "Unsupported type",
        422: "Not a decodable image",
        503: "Redis unavailable",
    }
    return {
        str(s): {
            "description": reasons[s],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for s in statuses
    }


def _job_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}},
    }


PATHS: dict[str, Any] = {
    "/v1/jobs": {
        "post": {
            "summary": "Submit one image",
            "operationId": "createJob",
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["image"],
                            "properties": {
                                "image": {"type": "string", "format": "binary"},
                                "metadata": {"type": "string", "description": "a JSON object"},
                            },
                        }
                    },
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["image_base64"],
                            "properties": {
                                "image_base64": {"type": "string", "format": "byte"},
                                "ref": {"type": "string", "maxLength": 1024},
                                "metadata": {"type": "object"},
                            },
                        }
                    },
                },
            },
            "responses": {
                "202": {
                    **_job_response("Queued; `Location` points at the job"),
                    "headers": {"Location": {"schema": {"type": "string"}}},
                },
                **_error_responses(400, 413, 415, 422, 503),
            },
        }
    },
    "/v1/jobs/{job_id}": {
        "get": {
            "summary": "Read a job; `wait` long-polls until it is final",
            "operationId": "getJob",
            "parameters": [
                {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {
                    "name": "wait",
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": defaults.MAX_WAIT_SECONDS,
                    },
                },
            ],
            "responses": {"200": _job_response("The job"), **_error_responses(400, 404, 503)},
        }
    },
    "/healthz": {
        "get": {
            "summary": "Liveness",
            "operationId": "healthz",
            "responses": {"200": {"description": "The API process is up"}},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: Redis reachable and an inference worker with a model online",
            "operationId": "readyz",
            "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
        }
    },
}


def openapi_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "skuai",
            "version": "1",
            "description": "Sneaker model and SKU prediction: a two-stage VGG16 cascade.",
        },
        "paths": PATHS,
        "components": {"schemas": {"Error": ERROR, "Job": JOB}},
    }
