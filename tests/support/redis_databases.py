"""Redis databases of the session server, lent one at a time so no two tests share one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis


def database_url(url: str, db: int) -> str:
    """`url` with database `db` instead of its own."""
    return url.rsplit("/", 1)[0] + f"/{db}"


class RedisDatabases:
    """Database numbers 1 and up of one Redis server (0 is the session's own), each lent to one
    borrower at a time and emptied before and after."""

    def __init__(self, url: str) -> None:
        self.url = url
        client = redis.Redis.from_url(url)
        try:
            count = int(client.config_get("databases")["databases"])
        finally:
            client.close()
        self.free = list(range(1, count))

    @contextlib.contextmanager
    def lend(self) -> Iterator[str]:
        """The URL of a free database, empty; emptied again and given back afterwards."""
        if not self.free:
            raise RuntimeError(
                "every Redis database of the test server is lent out; give some back sooner "
                "or start the server with more `databases`"
            )
        db = self.free.pop(0)
        url = database_url(self.url, db)
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
            yield url
        finally:
            client.flushdb()
            client.close()
            self.free.insert(0, db)
