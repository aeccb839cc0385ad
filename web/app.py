"""The Flask app factory."""

from __future__ import annotations

from flask import Flask

from shared.settings import Settings
from web.errors import register_error_handlers
from web.request_body import limit_bodies
from web.services import Services
from web.tenancy import authenticate


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API; settings come from the environment unless given."""
    from web import batches, docs, feedback, health, jobs, metrics, models, review, webhooks
    from web.console import bp as console

    settings = settings or Settings.from_env()
    app = Flask("skuai")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["skuai"] = Services.create(settings)
    register_error_handlers(app)
    limit_bodies(app, settings.max_json_bytes)
    metrics.instrument(app)
    app.before_request(authenticate)
    app.register_blueprint(health.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(batches.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(models.bp)
    app.register_blueprint(feedback.bp)
    app.register_blueprint(review.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(docs.swagger_ui)
    app.register_blueprint(console)  # /console: its own session, CSRF and CSP (web/console)
    return app
