"""SKUAI_REDIS_URL's forms: a plain Redis URL (redis://, rediss://, unix://), or Redis Sentinel:

    sentinel://[[user]:password@]host[:port][,host[:port]...][/db]?master=NAME[&sentinel_password=P]

The password is the Redis servers' (primary and replicas); `sentinel_password` is the sentinels'
own, when they require one. The sentinel URL is parsed here once, and the two clients that need
its parts get them from `SentinelUrl`: redis-py (shared/redis_client.py) and Kombu, whose form
is different (one `sentinel://` URL per sentinel joined by `;`, the master's name in transport
options)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

from shared.errors import InvalidArgument

SENTINEL_SCHEME = "sentinel"
PLAIN_SCHEMES = frozenset({"redis", "rediss", "unix"})
DEFAULT_SENTINEL_PORT = 26379
QUERY_OPTIONS = frozenset({"master", "sentinel_password"})


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed `sentinel://` URL: where the sentinels are and which master they watch."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    def kombu_url(self) -> str:
        """The broker URL Kombu's Sentinel transport reads: one `sentinel://` per sentinel,
        `;`-separated, with no trailing `;` (Kombu would add a localhost entry for it)."""
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        return ";".join(
            f"sentinel://{auth}{_netloc_host(host)}:{port}/{self.db}"
            for host, port in self.sentinels
        )

    def sentinel_kwargs(self, timeout: float) -> dict[str, Any]:
        """Connection options for the sentinels themselves (redis-py's `sentinel_kwargs`)."""
        options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if self.sentinel_password is not None:
            options["password"] = self.sentinel_password
        return options


def is_sentinel(url: str) -> bool:
    """True for a `sentinel://` URL."""
    return url.lower().startswith(f"{SENTINEL_SCHEME}://")


def check_redis_url(raw: str) -> str:
    """a redis://, rediss://, unix:// or sentinel://host:port[,host:port]/db?master=NAME URL"""
    if is_sentinel(raw):
        parse_sentinel(raw)
        return raw
    parsed = urlparse(raw)
    if parsed.scheme not in PLAIN_SCHEMES:
        raise InvalidArgument(
            "expected a redis://, rediss://, unix:// or sentinel://host:port/db?master=NAME URL"
        )
    if parsed.scheme != "unix" and not parsed.hostname:
        raise InvalidArgument("the URL has no host")
    try:
        parsed.port  # noqa: B018 - urllib raises ValueError on a bad port only when asked
    except ValueError:
        raise InvalidArgument("the port is not a number between 0 and 65535") from None
    return raw


def parse_sentinel(raw: str) -> SentinelUrl:
    """The parts of a `sentinel://` URL, or InvalidArgument naming what is wrong with it."""
    rest = raw[len(SENTINEL_SCHEME) + 3 :]
    rest = rest.partition("#")[0]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username, password = _credentials(userinfo) if at else (None, None)
    return SentinelUrl(
        sentinels=tuple(_sentinel_address(part) for part in hosts.split(",")),
        master=_master(query),
        db=_db(path),
        username=username,
        password=password,
        sentinel_password=_option(query, "sentinel_password"),
    )


def redacted(url: str) -> str:
    """`url` with its passwords replaced by `***`, for messages and logs."""
    url = re.sub(r"(://[^/@]*?:)[^@/]*@", r"\1***@", url)
    return re.sub(r"(sentinel_password=)[^&#]*", r"\1***", url)


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    if not colon:  # redis:// reads a lone word as the password too (Redis before ACLs)
        return None, unquote(user) or None
    return unquote(user) or None, unquote(password)


def _sentinel_address(part: str) -> tuple[str, int]:
    if not part:
        raise InvalidArgument("expected sentinel://host:port[,host:port...]; a host is missing")
    if part.startswith("["):  # [IPv6]:port
        host, bracket, port_text = part[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            raise InvalidArgument(f"the sentinel address {part!r} is not [IPv6]:port")
        port_text = port_text[1:]
    else:
        host, _, port_text = part.partition(":")
    if not host:
        raise InvalidArgument(f"the sentinel address {part!r} has no host")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidArgument(f"the port of sentinel {part!r} is not a number between 1 and 65535")
    return host, int(port_text)


def _db(path: str) -> int:
    if not path:
        return 0
    if not path.isascii() or not path.isdigit():
        raise InvalidArgument(f"the database {path!r} is not a number (e.g. /0)")
    return int(path)


def _master(query: str) -> str:
    unknown = set(parse_qs(query, keep_blank_values=True)) - QUERY_OPTIONS
    if unknown:
        raise InvalidArgument(
            f"unknown option {sorted(unknown)[0]!r}; a sentinel URL takes "
            "?master=NAME and optionally &sentinel_password=P"
        )
    master = _option(query, "master")
    if not master:
        raise InvalidArgument("the sentinel URL names no master: add ?master=NAME")
    return master


def _option(query: str, name: str) -> str | None:
    values = parse_qs(query, keep_blank_values=True).get(name)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidArgument(f"{name} is given {len(values)} times")
    return values[0]


def _netloc_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
