"""Clients that hold on to the API — slow sockets, a flood of long polls, huge and chunked bodies —
leave it answering everyone else, with its memory bounded. All against the real gunicorn API."""

from __future__ import annotations

import contextlib
import select
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import psutil
import pytest
import redis
import requests

from shared.job_store import JobStore
from shared.jobs import Job, new_job_id
from shared.settings import Settings
from tests.support.http import TENANT, http
from tests.support.polling import answers
from tests.support.processes import ApiServer

SLOW_SOCKETS = 40
STALLED_BODIES = 4
LONG_POLLS = 64
MIB = 1024 * 1024


def _connect(api_url: str) -> socket.socket:
    url = urlparse(api_url)
    return socket.create_connection((url.hostname, url.port), timeout=5)


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed (or answered) a socket that never finished its request."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    with contextlib.suppress(OSError):  # reset rather than closed: just as gone
        sock.recv(65536)
    return True


def test_slow_sockets_leave_the_api_answering(api_url: str, service_env: dict[str, str]) -> None:
    client_timeout = Settings.from_env(service_env).client_timeout
    sockets = [_connect(api_url) for _ in range(SLOW_SOCKETS)]
    stalled = [_connect(api_url) for _ in range(STALLED_BODIES)]
    closed: set[int] = set()
    answered: list[bool] = []
    try:
        for sock in sockets:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n")
        for sock in stalled:  # headers, then a tenth of the body, then nothing
            sock.sendall(
                "POST /v1/webhooks HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
                f"Authorization: {http.headers['Authorization']}\r\nContent-Length: 1000\r\n\r\n"
                '{"url": "'.encode()
            )
        start = time.monotonic()
        # A header line a second: never idle long enough for a per-read timeout to end it.
        while len(closed) < SLOW_SOCKETS and time.monotonic() - start < client_timeout + 4:
            for i, sock in enumerate(sockets):
                if i not in closed and _closed_by_server(sock):
                    closed.add(i)
                elif i not in closed:
                    try:
                        sock.sendall(b"X-Slow: 1\r\n")
                    except OSError:
                        closed.add(i)
            answered.append(answers(f"{api_url}/healthz", session=http))
            answered.append(answers(f"{api_url}/v1/jobs/job_none", 404, session=http))
            time.sleep(1)
        elapsed = time.monotonic() - start
        replies = [_reply(sock) for sock in stalled]
    finally:
        for sock in sockets + stalled:
            sock.close()
    assert all(answered), f"{answered.count(False)} of {len(answered)} requests went unanswered"
    assert len(closed) == SLOW_SOCKETS, f"{SLOW_SOCKETS - len(closed)} slow sockets still open"
    assert elapsed < client_timeout + 4
    for reply in replies:  # each stalled body was given up on with a 408 in the error shape
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert b'"request_timeout"' in reply


def test_a_long_poll_flood_leaves_the_api_answering(
    api_url: str, settings: Settings, conn: redis.Redis
) -> None:
    job = Job(id=new_job_id(), tenant=TENANT)
    JobStore(conn, result_ttl=60, image_ttl=60).create(job, None)  # never enqueued: stays queued
    url = f"{api_url}/v1/jobs/{job.id}"

    def poll() -> requests.Response:
        return requests.get(f"{url}?wait=10", headers=http.headers, timeout=30)

    with ThreadPoolExecutor(LONG_POLLS) as pool:
        polls = [pool.submit(poll) for _ in range(LONG_POLLS)]
        time.sleep(1.5)  # every poll has arrived; those under the cap are waiting
        answered = [answers(f"{api_url}/healthz", session=http) for _ in range(5)]
        plain = answers(url, session=http)  # the poller's own requests that do not wait
        started = time.monotonic()
        assert http.delete(url, timeout=5).status_code == 200  # wakes the waits
        responses = [p.result() for p in polls]
        woken_in = time.monotonic() - started
    assert answered == [True] * 5 and plain
    refused = [r for r in responses if r.status_code == 429]
    waited = [r for r in responses if r.status_code == 200]
    assert len(waited) == settings.max_waits_per_key
    assert len(refused) == LONG_POLLS - settings.max_waits_per_key
    for response in refused:
        assert response.json()["error"]["code"] == "too_many_waits"
        assert int(response.headers["Retry-After"]) >= 1
    assert {r.json()["status"] for r in waited} == {"canceled"}
    assert woken_in < 5  # the waits ended when the job did, not at their 10 s
    # The waits gave their places back: one more wait is accepted again.
    assert http.get(f"{url}?wait=1", timeout=5).status_code == 200


def _api_worker(api: ApiServer) -> int:
    """The pid of the API's one gunicorn worker."""
    (worker,) = psutil.Process(api.process.pid).children()
    return int(worker.pid)


def _memory(pid: int, field: str) -> int:
    """`VmRSS` (now) or `VmHWM` (peak) of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def _reply(sock: socket.socket) -> bytes:
    """One whole HTTP response (its headers, and its body by Content-Length) off a socket."""
    sock.settimeout(10)
    reply = b""
    while b"\r\n\r\n" not in reply or len(reply.partition(b"\r\n\r\n")[2]) < _length(reply):
        data = sock.recv(65536)
        if not data:
            break
        reply += data
    return reply


def _length(reply: bytes) -> int:
    for line in reply.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _send_chunked(sock: socket.socket, total: int, prefix: bytes) -> tuple[int, bytes]:
    """Stream a chunked body of up to `total` bytes; stop at the first reply. Bytes sent, reply."""
    chunk = b"A" * (256 * 1024)
    sent = 0
    sock.sendall(b"%x\r\n%s\r\n" % (len(prefix), prefix))
    while sent < total:
        if select.select([sock], [], [], 0)[0]:
            break
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:  # closed after answering: the reply is waiting to be read
            break
        sent += len(chunk)
    return sent, _reply(sock)


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/v1/batches", lambda s: s.max_json_bytes),
        ("/v1/jobs", lambda s: (s.max_image_bytes * 4) // 3 + 64 * 1024),
    ],
)
def test_a_chunked_json_body_is_cut_off_at_its_limit(
    api_server: ApiServer, settings: Settings, path: str, limit: object
) -> None:
    allowed = limit(settings)  # type: ignore[operator]
    worker = _api_worker(api_server)
    Path(f"/proc/{worker}/clear_refs").write_text("5")  # peak resident memory := current
    before = _memory(worker, "VmRSS")
    with _connect(api_server.url) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: {http.headers['Authorization']}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        sent, reply = _send_chunked(sock, allowed + 64 * MIB, b'{"image_base64": "')
    grew = _memory(worker, "VmHWM") - before
    print(f"{path}: 413 after {sent / MIB:.1f} MiB sent; API peak RSS +{grew / MIB:.1f} MiB")
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"payload_too_large"' in reply
    # Cut off as the limit passed, not at the end (the rest: socket buffers on the way).
    assert sent < allowed + 16 * MIB
    assert grew < 3 * allowed + 32 * MIB


@pytest.mark.parametrize("path", ["/v1/batches", "/v1/webhooks"])
def test_a_json_body_declared_over_its_limit_is_refused_unread(
    api_server: ApiServer, path: str
) -> None:
    with _connect(api_server.url) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: {http.headers['Authorization']}\r\n"
            "Content-Type: application/json\r\nContent-Length: 99000000\r\n\r\n".encode()
        )
        sock.sendall(b'{"images": [' + b" " * 65536)
        reply = _reply(sock)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"payload_too_large"' in reply
