"""Calling an API view from a console view as the same tenant, when the view reads request
details the console's own request does not have (the export's `Accept`)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, current_app, request


def call_with_accept(
    view: Callable[..., Response], path: str, accept: str, **kwargs: str
) -> Response:
    """`view(**kwargs)` answering a GET of `path` with this request's `decision` filter and
    `Accept: accept`. The app context, and with it the signed-in tenant in `g`, stays."""
    query = {"decision": request.args["decision"]} if "decision" in request.args else {}
    with current_app.test_request_context(path, query_string=query, headers={"Accept": accept}):
        return view(**kwargs)
