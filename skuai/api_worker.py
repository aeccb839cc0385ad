"""The API's gunicorn worker: gevent's, so that a slow client or a long poll holds a greenlet
rather than one of a few threads, with a deadline on each phase of a client's request."""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from typing import Any

import gevent
from gevent.monkey import MonkeyPatchWarning
from gunicorn.workers.ggevent import GeventWorker

# A body the app answered without reading it all (a 413 past the limit, a 401 or 429 before
# reading) is read on and thrown away for up to `keepalive` seconds, as nginx's lingering close
# does: most clients read the answer only once they have sent the whole body. Past that, or
# when the client pauses for DRAIN_TIMEOUT, the connection is closed.
DRAIN_READ = 64 * 1024
DRAIN_TIMEOUT = 2.0


class ApiWorker(GeventWorker):
    """gevent worker whose `keepalive` is each client's deadline: for the request line and
    headers as a whole (gunicorn's gevent worker already bounds them by it), and for each body
    read and response write, so a client that stalls mid-request lets go of its connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Connections waiting for their next request, each with the deadline that ends the wait.
        self._waiting: dict[Any, gevent.Timeout] = {}

    def patch(self) -> None:
        """gevent's monkey patching, as the gevent worker does it."""
        with warnings.catch_warnings():
            # The master imported `redis` (the command line needs it), whose asyncio client holds
            # ssl names from before patching; the API uses the sync client, patched at call time.
            warnings.simplefilter("ignore", MonkeyPatchWarning)
            super().patch()

    @contextlib.contextmanager
    def timeout_ctx(self) -> Iterator[None]:
        """gunicorn's wait for a request line and headers, which shutdown may also end."""
        deadline = gevent.Timeout(self.cfg.keepalive, False)
        self._waiting[gevent.getcurrent()] = deadline
        try:
            with deadline:
                yield
        finally:
            self._waiting.pop(gevent.getcurrent(), None)

    def run(self) -> None:
        """Serve until told to stop, then close idle connections at once rather than after
        their keep-alive: only requests in progress hold up the shutdown."""
        gevent.spawn(self._close_idle_when_stopping)
        super().run()

    def _close_idle_when_stopping(self) -> None:
        while self.alive:
            gevent.sleep(0.2)
        for handler, deadline in list(self._waiting.items()):
            handler.kill(deadline, block=False)  # ends the wait as its deadline would

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> None:
        """Serve one request with socket deadlines, then keep the connection only if it is clean."""
        sock.settimeout(self.cfg.keepalive)
        try:
            super().handle_request(listener_name, req, sock, addr)
            sock.settimeout(DRAIN_TIMEOUT)
            if not _drain(req.body, self.cfg.keepalive):
                raise StopIteration()  # still more body coming: close rather than read it all
        except TimeoutError:
            self.log.info("closed the connection of %s: it stopped sending or reading", addr)
            raise StopIteration() from None
        except OSError as exc:  # a broken or malformed body while draining it
            self.log.debug("closed the connection of %s: %s", addr, exc)
            raise StopIteration() from None
        finally:
            # Back to blocking: between requests gunicorn's own keep-alive deadline applies.
            with contextlib.suppress(OSError):
                sock.settimeout(None)


def _drain(body: Any, seconds: float) -> bool:
    """Read and drop what is left of a request body for up to `seconds`; True once all is read."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not body.read(DRAIN_READ):
            return True
        gevent.sleep(0)  # a fast sender must not keep the other greenlets waiting
    return False
