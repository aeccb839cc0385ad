"""KeyStore: API keys (stored hashed) and the tenants they act for."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

import redis

from shared import keys
from shared.errors import BadRequest, NotFound
from shared.jobs import utc_now
from shared.redis_client import text

TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
KEY_PREFIX = "sk_"


def digest(key: str) -> str:
    """How a key is stored and looked up: its SHA-256 (keys are random, so no salt is needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    """What is kept about a key: never the key itself."""

    id: str  # the first characters of the digest: enough to name it, useless to an attacker
    tenant: str
    created_at: str

    def to_public(self) -> dict[str, Any]:
        """For `skuai keys list`."""
        return {"id": self.id, "tenant": self.tenant, "created_at": self.created_at}


def check_tenant_name(name: str) -> str:
    """Tenant names: lowercase letters, digits, '-' and '_' (they appear in Redis keys)."""
    if not TENANT_NAME.match(name):
        raise BadRequest(f"tenant {name!r}: use 1-63 lowercase letters, digits, '-' or '_'")
    return name


class KeyStore:
    """API keys in Redis."""

    def __init__(self, conn: redis.Redis) -> None:
        self.conn = conn

    def create(self, tenant: str) -> str:
        """A new key for `tenant` (the tenant is created with its first key)."""
        check_tenant_name(tenant)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        hashed = digest(key)
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.hset(keys.api_key(hashed), mapping={"tenant": tenant, "created_at": utc_now()})
            pipe.sadd(keys.tenant_keys(tenant), hashed)
            pipe.sadd(keys.TENANTS, tenant)
            pipe.execute()
        return key

    def tenant_of(self, key: str) -> str | None:
        """The tenant a key acts for, or None for an unknown or revoked key."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        tenant = self.conn.hget(keys.api_key(digest(key)), "tenant")
        return text(tenant) if tenant is not None else None

    def list(self, tenant: str | None = None) -> list[KeyInfo]:
        """Keys of one tenant, or of all."""
        tenants = [tenant] if tenant else sorted(text(t) for t in self.conn.smembers(keys.TENANTS))
        found = []
        for name in tenants:
            for hashed in sorted(text(h) for h in self.conn.smembers(keys.tenant_keys(name))):
                created = self.conn.hget(keys.api_key(hashed), "created_at")
                if created is not None:
                    found.append(KeyInfo(id=hashed[:12], tenant=name, created_at=text(created)))
        return found

    def revoke(self, key_id: str) -> KeyInfo:
        """Revoke the key whose id (digest prefix) is `key_id`."""
        for info in self.list():
            if info.id == key_id:
                for hashed in self.conn.smembers(keys.tenant_keys(info.tenant)):
                    if text(hashed).startswith(key_id):
                        self.conn.delete(keys.api_key(text(hashed)))
                        self.conn.srem(keys.tenant_keys(info.tenant), hashed)
                return info
        raise NotFound(f"no key with id {key_id!r}")
