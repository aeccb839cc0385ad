"""Outbound HTTP that cannot be aimed at internal services (SSRF): http(s) only, and every address
must be global. A URL is checked when accepted without DNS (its syntax, an address written in it,
localhost): a batch of 10,000 URLs must not wait on as many lookups. Host names are resolved by
the worker, whose check on the socket actually connected is the one that counts, so DNS
rebinding cannot slip past either. Redirects are never followed. Private addresses are allowed only
with SKUAI_ALLOW_PRIVATE_URLS=1 (tests, private deployments)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from shared.errors import BadRequest

MAX_URL_LENGTH = 2048


# IPv6 prefixes whose last 32 bits are an IPv4 address the packets end up at.
_LAST_32_BITS_IPV4 = (
    ipaddress.IPv6Network("::ffff:0:0/96"),  # IPv4-mapped
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (SIIT)
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated)
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64, well-known prefix
)
# Local-use NAT64 (RFC 8215): where its IPv4 sits depends on the operator's prefix length, so
# it cannot be checked; it is never a public destination anyway.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def address_allowed(address: str, allow_private: bool) -> bool:
    """True for a global unicast address, or for any address when private ones are allowed."""
    if allow_private:
        return True
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return _global(ip)
    if ip in _LOCAL_NAT64:
        return False
    embedded = embedded_ipv4(ip)
    if embedded is None:
        return _global(ip)
    # The IPv6 form is only a wrapper (::ffff:0:0/96 is not "global" itself): judge the target.
    return _global(embedded) and (ip.ipv4_mapped is not None or _global(ip))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, translated, compatible, NAT64, 6to4,
    Teredo's client), or None."""
    if any(ip in network for network in _LAST_32_BITS_IPV4):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def _global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast


def check_url(url: Any, *, allow_private: bool, field: str = "url") -> str:
    """Validate a URL a client gave us; BadRequest naming `field` when it is not acceptable."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise BadRequest(f"{field} must be an http(s) URL of at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed "[" around an IPv6 host
        raise BadRequest(f"{field} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"{field} must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise BadRequest(f"{field} must not carry credentials")
    try:
        _ = parts.port  # raises on a port out of range or not a number
    except ValueError:
        raise BadRequest(f"{field} has an invalid port") from None
    if not parts.hostname.isprintable() or any(c.isspace() for c in parts.hostname):
        raise BadRequest(f"{field} has an invalid host name")
    address = _literal_address(parts.hostname)
    if address is not None and not address_allowed(address, allow_private):
        raise BadRequest(f"{field}: {parts.hostname} is a private or reserved address")
    if address is None and not allow_private and _local_name(parts.hostname):
        raise BadRequest(f"{field}: {parts.hostname} is a private or reserved address")
    return url


def _literal_address(host: str) -> str | None:
    """The address `host` spells without DNS (IPv6, or IPv4 in any form inet_aton reads, such
    as 2130706433 or 0x7f.1), or None for a name."""
    try:
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return None


def _local_name(host: str) -> bool:
    # RFC 6761: these always mean this machine, whatever DNS says.
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


class _GuardMixin:
    allow_private = False

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        peer = sock.getpeername()[0]
        if not address_allowed(peer, self.allow_private):
            sock.close()
            raise NewConnectionError(self, f"refused to connect to non-global address {peer}")  # type: ignore[arg-type]
        return sock


def guarded_session(*, allow_private: bool) -> requests.Session:
    """A requests Session whose every connection is checked; no proxies from the environment."""

    class Http(_GuardMixin, HTTPConnection):
        pass

    class Https(_GuardMixin, HTTPSConnection):
        pass

    Http.allow_private = Https.allow_private = allow_private

    class HttpPool(HTTPConnectionPool):
        ConnectionCls = Http

    class HttpsPool(HTTPSConnectionPool):
        ConnectionCls = Https

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": HttpPool, "https": HttpsPool}
            self.poolmanager.key_fn_by_scheme = dict(self.poolmanager.key_fn_by_scheme)

    session = requests.Session()
    session.trust_env = False  # a proxy from the environment would hide the real peer
    session.max_redirects = 0
    session.mount("http://", Adapter())
    session.mount("https://", Adapter())
    return session
