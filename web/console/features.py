"""API routes other parts of the service add over time; the console offers what they do only
once the app serves them (the review store's image, feedback on a prediction)."""

from __future__ import annotations

from flask import current_app

REVIEW_IMAGE = "/v1/review/<job_id>/image"
FEEDBACK = "/v1/jobs/<job_id>/feedback"


def served(rule: str) -> bool:
    """Whether the app has a route for `rule`."""
    return any(r.rule == rule for r in current_app.url_map.iter_rules())


def features() -> dict[str, bool]:
    """The optional actions the grid shows."""
    return {"review_image": served(REVIEW_IMAGE), "feedback": served(FEEDBACK)}


def view_of(rule: str) -> tuple[str, object]:
    """The endpoint name and view function serving `rule` (the caller checked `served`)."""
    for r in current_app.url_map.iter_rules():
        if r.rule == rule:
            return r.endpoint, current_app.view_functions[r.endpoint]
    raise LookupError(rule)
