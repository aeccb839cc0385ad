"""The batches a tenant uploaded through the console, newest first, so people can find them
again (the API has no batch listing; scripts keep their own ids)."""

from __future__ import annotations

import json
from typing import Any

from web.services import services

KEEP = 50
TTL_SECONDS = 30 * 24 * 3600


def _key(tenant: str) -> str:
    return f"console:recent:{tenant}"


def remember(tenant: str, batch: dict[str, Any]) -> None:
    """Put an uploaded batch at the top of the tenant's list."""
    entry = json.dumps({k: batch.get(k) for k in ("id", "created_at", "total")})
    with services().conn.pipeline(transaction=True) as pipe:
        pipe.lpush(_key(tenant), entry)
        pipe.ltrim(_key(tenant), 0, KEEP - 1)
        pipe.expire(_key(tenant), TTL_SECONDS)
        pipe.execute()


def recent(tenant: str, count: int = 10) -> list[dict[str, Any]]:
    """The tenant's latest console uploads."""
    return [json.loads(raw) for raw in services().conn.lrange(_key(tenant), 0, count - 1)]
