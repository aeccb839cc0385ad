"""The OpenAPI description of the API (`/openapi.json`), written by hand to match the routes."""

from __future__ import annotations

from typing import Any

from shared import defaults
from shared.image_formats import ACCEPTED_NAMES
from web.openapi_schemas import SCHEMAS

# The formats every image field takes (files, archive entries, base64 and fetched URLs alike).
IMAGE_DESCRIPTION = (
    f"{ACCEPTED_NAMES} (first frame of an animation, first page of a TIFF), recognised by content"
)


def _error_responses(*statuses: int) -> dict[str, Any]:
    reasons = {
        401: "Missing or bad API key",
        409: "Conflict",
        429: "Rate, queue or long-poll (`?wait=`) limit; see Retry-After",
        400: "Bad request",
        404: "Not found",
        408: "The client stopped sending the body for SKUAI_CLIENT_TIMEOUT seconds",
        413: "Too large",
        415: f"Unsupported type: an image not in {ACCEPTED_NAMES}, or another body or archive",
        422: "Not a decodable image, or an Idempotency-Key reused with another request",
        503: "Redis unavailable",
    }
    statuses = (*statuses, 401, 429)
    return {
        str(s): {
            "description": reasons[s],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for s in statuses
    }


def _response(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _job_response(description: str) -> dict[str, Any]:
    return _response(description, "Job")


def _id_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


BATCH_PATHS: dict[str, Any] = {
    "/v1/batches": {
        "post": {
            "summary": "Submit many images: files, an archive (zip/tar), or URLs",
            "operationId": "createBatch",
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 255},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "images": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                    "description": IMAGE_DESCRIPTION,
                                },
                                "archive": {"type": "string", "format": "binary"},
                                "metadata": {"type": "string", "description": "a JSON object"},
                                "callback_url": {"type": "string", "format": "uri"},
                            },
                        }
                    },
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["images"],
                            "properties": {
                                "images": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "object",
                                        "required": ["url"],
                                        "properties": {
                                            "url": {"type": "string", "format": "uri"},
                                            "ref": {"type": "string"},
                                        },
                                    },
                                },
                                "metadata": {"type": "object"},
                                "callback_url": {"type": "string", "format": "uri"},
                            },
                        }
                    },
                },
            },
            "responses": {
                "202": _response("Accepted; each image is a job of the batch", "Batch"),
                **_error_responses(400, 408, 409, 413, 415, 422, 503),
            },
        }
    },
    "/v1/batches/{batch_id}": {
        "get": {
            "summary": "Status and exact counts",
            "operationId": "getBatch",
            "parameters": [_id_param("batch_id")],
            "responses": {"200": _response("The batch", "Batch"), **_error_responses(404, 503)},
        }
    },
    "/v1/batches/{batch_id}/results": {
        "get": {
            "summary": "A page of results; Accept text/csv or application/x-ndjson streams all",
            "operationId": "getBatchResults",
            "parameters": [
                _id_param("batch_id"),
                {
                    "name": "cursor",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
            ],
            "responses": {
                "200": {
                    "description": "Results in upload order",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ResultsPage"}
                        },
                        "text/csv": {"schema": {"type": "string"}},
                        "application/x-ndjson": {"schema": {"type": "string"}},
                    },
                },
                **_error_responses(400, 404, 503),
            },
        }
    },
    "/v1/batches/{batch_id}/cancel": {
        "post": {
            "summary": "Cancel what has not run; finished results stay",
            "operationId": "cancelBatch",
            "parameters": [_id_param("batch_id")],
            "responses": {"200": _response("The batch", "Batch"), **_error_responses(404, 503)},
        }
    },
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
                                "image": {
                                    "type": "string",
                                    "format": "binary",
                                    "description": IMAGE_DESCRIPTION,
                                },
                                "metadata": {"type": "string", "description": "a JSON object"},
                            },
                        }
                    },
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["image_base64"],
                            "properties": {
                                "image_base64": {
                                    "type": "string",
                                    "format": "byte",
                                    "description": IMAGE_DESCRIPTION,
                                },
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
                **_error_responses(400, 408, 413, 415, 422, 503),
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
        },
        "delete": {
            "summary": "Cancel a job that has not finished",
            "operationId": "cancelJob",
            "parameters": [_id_param("job_id")],
            "responses": {
                "200": _job_response("The canceled job"),
                **_error_responses(404, 409, 503),
            },
        },
    },
    "/v1/models": {
        "get": {
            "summary": "Active version, versions live on workers, labels and test metrics",
            "operationId": "listModels",
            "responses": {
                "200": {"description": "The registry as the API sees it"},
                **_error_responses(503),
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "Liveness",
            "operationId": "healthz",
            "security": [],
            "responses": {"200": {"description": "The API process is up"}},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: Redis reachable and an inference worker with a model online",
            "operationId": "readyz",
            "security": [],
            "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
        }
    },
}


WEBHOOK_PATHS: dict[str, Any] = {
    "/v1/webhooks": {
        "post": {
            "summary": "Subscribe a URL to events; the signing secret is returned once",
            "operationId": "createWebhook",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["url", "events"],
                            "properties": {
                                "url": {"type": "string", "format": "uri"},
                                "events": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "string",
                                        "enum": ["job.succeeded", "job.failed", "batch.completed"],
                                    },
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": _response("The subscription, with its secret", "Webhook"),
                **_error_responses(400, 408, 413, 503),
            },
        },
        "get": {
            "summary": "The tenant's subscriptions",
            "operationId": "listWebhooks",
            "responses": {
                "200": {"description": "Subscriptions (no secrets)"},
                **_error_responses(503),
            },
        },
    },
    "/v1/webhooks/{webhook_id}": {
        "get": {
            "summary": "One subscription",
            "operationId": "getWebhook",
            "parameters": [_id_param("webhook_id")],
            "responses": {
                "200": _response("The subscription", "Webhook"),
                **_error_responses(404, 503),
            },
        },
        "delete": {
            "summary": "Unsubscribe",
            "operationId": "deleteWebhook",
            "parameters": [_id_param("webhook_id")],
            "responses": {"204": {"description": "Deleted"}, **_error_responses(404, 503)},
        },
    },
    "/v1/webhooks/{webhook_id}/enable": {
        "post": {
            "summary": "Re-enable a disabled subscription (after a 410 Gone or an endpoint failing "
            "for the whole retry schedule); the events it missed stay in its delivery log, "
            "marked skipped, and can then be replayed",
            "operationId": "enableWebhook",
            "parameters": [_id_param("webhook_id")],
            "responses": {
                "200": _response("The subscription, active again", "Webhook"),
                **_error_responses(404, 503),
            },
        }
    },
    "/v1/webhooks/{webhook_id}/deliveries": {
        "get": {
            "summary": "The delivery log: every attempt with time, status code, latency, error",
            "operationId": "listDeliveries",
            "parameters": [_id_param("webhook_id")],
            "responses": {
                "200": {"description": "Deliveries, newest first"},
                **_error_responses(404, 503),
            },
        }
    },
    "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry": {
        "post": {
            "summary": "Replay a delivery with the same webhook-id (409 while the subscription "
            "is disabled: enable it first)",
            "operationId": "retryDelivery",
            "parameters": [_id_param("webhook_id"), _id_param("delivery_id")],
            "responses": {
                "202": {"description": "Queued again"},
                **_error_responses(404, 409, 503),
            },
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
        "paths": {**PATHS, **BATCH_PATHS, **WEBHOOK_PATHS},
        "security": [{"apiKey": []}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "skuai keys create --tenant NAME",
                }
            },
        },
    }
