"""Which tenant a request acts for. Until API keys exist every request is the public tenant."""

from __future__ import annotations

PUBLIC_TENANT = "public"


def current_tenant() -> str:
    """The tenant of the current request."""
    return PUBLIC_TENANT
