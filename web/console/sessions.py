"""Console sign-in: an API key checked like the API checks it, then a server-side session in
Redis named by a random HttpOnly, SameSite=Strict cookie; CSRF tokens for every POST.

Why server-side: the key never leaves the sign-in request (Redis keeps its digest, the cookie a
random id), sign-out really ends the session, revoking the key ends it too, and every API worker
process sees the same sessions without a shared signing secret to configure."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from flask import g, request
from werkzeug.wrappers import Response

from shared import keys
from shared.api_keys import digest
from shared.errors import Forbidden
from shared.redis_client import text
from web.services import services

COOKIE = "skuai_console"
LOGIN_CSRF_COOKIE = "skuai_console_login"  # double-submit token of the sign-in form
SESSION_SECONDS = 8 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
PATH = "/console"


@dataclass(frozen=True)
class ConsoleSession:
    """Who is signed in: the tenant, the key's digest (rate limits) and the CSRF token."""

    tenant: str
    key_digest: str
    csrf: str


def _redis_key(token: str) -> str:
    # Stored under the token's digest: a copy of Redis does not hand out live sessions.
    return f"console:session:{hashlib.sha256(token.encode()).hexdigest()}"


def start(api_key: str) -> tuple[str, ConsoleSession] | None:
    """A new session for a valid key: its cookie token and contents; None for a bad key."""
    svc = services()
    tenant = svc.keys.tenant_of(api_key.strip())
    if tenant is None:
        return None
    token = secrets.token_urlsafe(32)
    session = ConsoleSession(tenant, digest(api_key.strip()), secrets.token_urlsafe(32))
    svc.conn.hset(
        _redis_key(token),
        mapping={"tenant": tenant, "key_digest": session.key_digest, "csrf": session.csrf},
    )
    svc.conn.expire(_redis_key(token), SESSION_SECONDS)
    return token, session


def current() -> ConsoleSession | None:
    """The request's session, while its key is still valid (a revoked key ends it)."""
    token = request.cookies.get(COOKIE, "")
    if not token:
        return None
    conn = services().conn
    fields = {text(k): text(v) for k, v in conn.hgetall(_redis_key(token)).items()}
    if not fields:
        return None
    key_tenant = conn.hget(keys.api_key(fields["key_digest"]), "tenant")
    if key_tenant is None or text(key_tenant) != fields["tenant"]:
        conn.delete(_redis_key(token))
        return None
    return ConsoleSession(fields["tenant"], fields["key_digest"], fields["csrf"])


def end() -> None:
    """Sign out: the session is gone from Redis, whatever the browser keeps."""
    token = request.cookies.get(COOKIE, "")
    if token:
        services().conn.delete(_redis_key(token))


def act_as(session: ConsoleSession) -> None:
    """Let the API's own functions serve this request as the session's tenant."""
    g.tenant = session.tenant
    g.key_digest = session.key_digest
    g.console_csrf = session.csrf
    services().admission.take_token(session.key_digest)  # the key's rate limit, as in the API


def check_csrf(expected: str) -> None:
    """A POST carries the token in a header (scripts) or a form field (forms), else 403.
    A multipart body is never parsed here: its view sets the size limit first."""
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent and request.mimetype == "application/x-www-form-urlencoded":
        sent = request.form.get(CSRF_FIELD, "")
    if not (sent and expected and hmac.compare_digest(sent, expected)):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page and retry")


def set_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
    """A console cookie: HttpOnly, SameSite=Strict, Secure over HTTPS, for /console only."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PATH,
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )
