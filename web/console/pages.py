"""The console's pages: sign in and out, upload, a batch, webhooks and their delivery logs,
and models. Each page asks the API's own view functions for its data, as the session's tenant."""

from __future__ import annotations

import secrets

from flask import Response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from shared.errors import Conflict
from training.registry import Registry
from web import batches, models, webhooks
from web.console import bp, recent, sessions
from web.console.data import CONFUSION_IMAGE
from web.console.results import GRID_PAGE
from web.services import services
from web.tenancy import current_tenant


@bp.get("/")
def home() -> ResponseReturnValue:
    """The console opens on the upload page."""
    return redirect(url_for("console.upload"))


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> ResponseReturnValue:
    """A form for the API key (posted, never in a URL); a session once it is valid."""
    error = None
    if request.method == "POST":
        started = sessions.start(request.form.get("api_key", ""))
        if started is not None:
            response = redirect(url_for("console.upload"))
            sessions.set_cookie(response, sessions.COOKIE, started[0], sessions.SESSION_SECONDS)
            response.delete_cookie(sessions.LOGIN_CSRF_COOKIE, path=sessions.PATH)
            return response
        error = "That API key is unknown or revoked."
    token = secrets.token_urlsafe(32)
    page = render_template("console/sign_in.html", login_csrf=token, error=error)
    response = Response(page, status=401 if error else 200)
    sessions.set_cookie(response, sessions.LOGIN_CSRF_COOKIE, token, None)
    return response


@bp.post("/sign-out")
def sign_out() -> ResponseReturnValue:
    """End the session here and in Redis."""
    sessions.end()
    response = redirect(url_for("console.sign_in"))
    response.delete_cookie(sessions.COOKIE, path=sessions.PATH)
    return response


@bp.get("/upload")
def upload() -> str:
    """Drop files, a folder or a zip; then the batch's progress and results on the same page."""
    latest = recent.recent(current_tenant())
    return render_template("console/batch.html", batch=None, page=GRID_PAGE, recent=latest)


@bp.get("/batches/<batch_id>")
def batch(batch_id: str) -> str:
    """A batch's progress and results (404 for another tenant's batch, as in the API)."""
    found = batches.get_batch(batch_id).get_json()
    return render_template("console/batch.html", batch=found, page=GRID_PAGE)


@bp.get("/webhooks")
def webhook_list() -> str:
    """The tenant's subscriptions."""
    subs = webhooks.list_webhooks().get_json()["items"]
    return render_template("console/webhooks.html", subscriptions=subs)


NOTICES = {
    "enabled": "The subscription is active again.",
    "replayed": "The delivery is queued again.",
}


@bp.get("/webhooks/<webhook_id>")
def webhook_log(webhook_id: str) -> str:
    """One subscription and its delivery log: every attempt's time, status code and latency."""
    return _webhook_page(webhook_id, NOTICES.get(request.args.get("notice", ""), ""))


def _webhook_page(webhook_id: str, notice: str) -> str:
    sub = webhooks.get_webhook(webhook_id).get_json()
    log = webhooks.list_deliveries(webhook_id).get_json()["items"]
    return render_template("console/webhook.html", sub=sub, deliveries=log, notice=notice)


@bp.post("/webhooks/<webhook_id>/enable")
def webhook_enable(webhook_id: str) -> ResponseReturnValue:
    """Re-enable a disabled subscription."""
    webhooks.enable_webhook(webhook_id)
    return redirect(url_for("console.webhook_log", webhook_id=webhook_id, notice="enabled"))


@bp.post("/webhooks/<webhook_id>/deliveries/<delivery_id>/replay")
def webhook_replay(webhook_id: str, delivery_id: str) -> ResponseReturnValue:
    """Send one delivery again now (a disabled subscription is a message, not an error page)."""
    try:
        webhooks.retry_delivery(webhook_id, delivery_id)
    except Conflict as exc:  # disabled: say so on the log page, which offers to enable it
        return _webhook_page(webhook_id, exc.message), 409
    return redirect(url_for("console.webhook_log", webhook_id=webhook_id, notice="replayed"))


@bp.get("/models")
def model_list() -> str:
    """Versions with their metrics, lineage, confusion matrix and shadow results, and the
    active one."""
    registry = models.list_models().get_json()
    folders = Registry(services().settings.registry_dir).versions()
    pictured = {v.name for v in folders if (v.path / CONFUSION_IMAGE).is_file()}
    return render_template("console/models.html", registry=registry, pictured=pictured)
