"""Authentication: `Authorization: Bearer <key>` on every `/v1/` request names the tenant, whose
jobs, batches and webhooks are the only ones the request can see; each key is rate limited."""

from __future__ import annotations

from flask import g, request

from shared.api_keys import digest
from shared.errors import Unauthorized
from web.services import services

PROTECTED_PREFIX = "/v1/"


def authenticate() -> None:
    """Before each request: resolve the API key to its tenant, or answer 401; then rate limit."""
    if not request.path.startswith(PROTECTED_PREFIX):
        return
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("send your API key as 'Authorization: Bearer <key>'")
    svc = services()
    tenant = svc.keys.tenant_of(key.strip())
    if tenant is None:
        raise Unauthorized("the API key is unknown or revoked")
    g.tenant = tenant
    g.key_digest = digest(key.strip())
    svc.admission.take_token(g.key_digest)


def current_tenant() -> str:
    """The tenant of the current request (set by `authenticate`)."""
    return str(g.tenant)


def current_key_digest() -> str:
    """The digest of the current request's API key (set by `authenticate`)."""
    return str(g.key_digest)
