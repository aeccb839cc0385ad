"""`/openapi.json` and `/docs` (Swagger UI, served from the installed package, no CDN)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, redirect
from flask_swagger_ui import get_swaggerui_blueprint

from web.openapi import openapi_document

bp = Blueprint("docs", __name__)
swagger_ui = get_swaggerui_blueprint("/docs", "/openapi.json", config={"app_name": "skuai"})


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI description of every route."""
    return jsonify(openapi_document())


@bp.get("/")
def index() -> Response:
    """The root points people at the docs."""
    return redirect("/docs/")  # type: ignore[return-value]
