"""Every console request: signed in (else the sign-in page, or 401 for the JSON endpoints),
acting as the session's tenant, CSRF-checked when it posts; every answer carries a strict
Content-Security-Policy; errors are a page (or the API's JSON error shape)."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Response, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from shared.errors import Forbidden, SkuaiError, Unauthorized
from web.console import bp, sessions
from web.errors import error_response

API_PREFIX = "/console/api/"
OPEN_ENDPOINTS = {"console.static", "console.sign_in"}
# No inline script or style anywhere; blob: shows the browser's own copy of an upload.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@bp.before_request
def require_session() -> ResponseReturnValue | None:
    """Signed in, or sent to sign in; POSTs carry the session's CSRF token."""
    if request.endpoint in OPEN_ENDPOINTS:
        if request.method == "POST":
            check_login_csrf()
        return None
    session = sessions.current()
    if session is None:
        if request.path.startswith(API_PREFIX):
            raise Unauthorized("sign in to the console first")
        return redirect(url_for("console.sign_in"))
    sessions.act_as(session)
    if request.method == "POST":
        sessions.check_csrf(session.csrf)
    return None


def check_login_csrf() -> None:
    """The sign-in form's token matches its cookie (double submit), else 403."""
    sent = request.form.get(sessions.CSRF_FIELD, "")
    expected = request.cookies.get(sessions.LOGIN_CSRF_COOKIE, "")
    if not (sent and expected and hmac.compare_digest(sent, expected)):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page and retry")


@bp.after_request
def secure_headers(response: Response) -> Response:
    """The CSP and friends on every console answer; pages are never cached."""
    response.headers.update(HEADERS)
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.context_processor
def console_context() -> dict[str, Any]:
    """What every console template may use."""
    return {
        "tenant": g.get("tenant"),
        "csrf_token": g.get("console_csrf", ""),
        "csrf_field": sessions.CSRF_FIELD,
    }


@bp.errorhandler(SkuaiError)
def console_error(exc: SkuaiError) -> ResponseReturnValue:
    """JSON for the scripts, a page for people."""
    if request.path.startswith(API_PREFIX):
        return error_response(exc)
    page = render_template("console/error.html", error=exc.to_dict())
    return page, exc.http_status, HEADERS
