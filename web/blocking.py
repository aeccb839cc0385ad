"""Work that would hold up every connection of a gevent API worker (unpacking archives, hashing
uploads), run on threads of its own so the worker's other greenlets keep being served."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from gevent import monkey
from gevent.threadpool import ThreadPool

T = TypeVar("T")
P = ParamSpec("P")
# Per API worker process. Not gevent's hub pool: that one resolves host names (Redis's too),
# which a few long unpacks must not hold up.
THREADS = 4

_pool: ThreadPool | None = None


def off_hub(work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`work(*args, **kwargs)` on a thread of the pool when this process is gevent's (the API's
    worker): zlib, bz2, lzma and hashlib let go of the GIL, and Python code is switched out every
    few ms, so the hub keeps serving. Called directly elsewhere (Flask's test client, scripts)."""
    global _pool
    if not monkey.is_module_patched("threading"):
        return work(*args, **kwargs)
    if _pool is None:  # made in the worker, after gunicorn forked it
        _pool = ThreadPool(THREADS)
    result: T = _pool.apply(work, args, kwargs)
    return result
