"""The web console under `/console`: server-rendered pages for batches, results, webhooks and
models, a little plain JavaScript, and no inline script or style (see `guard.py`)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
)

# The routes register themselves on `bp`.
from web.console import data, guard, pages  # noqa: E402,F401
