"""Stack: the API, inference worker(s), webhook worker and Flower as child processes, with
their logs under SKUAI_HOME/logs, readiness waiting, and an orderly shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from shared.queues import INFERENCE, INTERACTIVE, WEBHOOKS
from shared.settings import Settings

STOP_TIMEOUT = 20.0


@dataclass
class Child:
    """One process of the stack."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Stack:
    """The local deployment: one process per component."""

    settings: Settings
    api_port: int
    flower_port: int
    inference_workers: int = 1
    api_key: str = ""
    children: list[Child] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        """Where the API listens."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def flower_url(self) -> str:
        """Where Flower listens."""
        return f"http://127.0.0.1:{self.flower_port}"

    def start(self) -> None:
        """Start every component (they connect to Redis and load models on their own)."""
        self._spawn("api", ["api", "--host", "127.0.0.1", "--port", str(self.api_port)])
        for i in range(self.inference_workers):
            self._spawn(
                f"inference-worker-{i + 1}",
                [
                    "worker",
                    "--queues",
                    f"{INTERACTIVE},{INFERENCE}",
                    "--concurrency",
                    "1",
                    "--name",
                    f"inference{i + 1}",
                ],
            )
        # Four processes: a newly hanging endpoint may hold two attempts for one timeout
        # (SKUAI_WEBHOOK_ENDPOINT_CONCURRENCY) and the others still deliver to everyone else.
        self._spawn(
            "webhook-worker",
            ["worker", "--queues", WEBHOOKS, "--concurrency", "4", "--name", "webhooks"],
        )
        self._spawn("flower", ["flower", "--port", str(self.flower_port)])

    def spawn_api(self, name: str, port: int, extra_env: dict[str, str]) -> str:
        """One more API process (e.g. with other settings, for a benchmark); its URL."""
        self._spawn(name, ["api", "--host", "127.0.0.1", "--port", str(port)], extra_env)
        return f"http://127.0.0.1:{port}"

    def memory_roots(self) -> dict[str, int]:
        """Pids of the API and inference worker processes, for memory sampling."""
        return {
            c.name: c.process.pid
            for c in self.children
            if c.name == "api" or c.name.startswith("inference")
        }

    def _spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> None:
        logs = self.settings.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{name}.log"
        env = {**os.environ, **self.settings.env(), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "skuai", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.children.append(Child(name, process, log))

    def wait_ready(self, timeout: float) -> None:
        """Block until `/readyz` says ready; raise with the failing component's log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if requests.get(f"{self.api_url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise TimeoutError(
            f"the stack was not ready after {timeout:.0f} s; logs in {self.settings.home / 'logs'}"
        )

    def check_alive(self) -> None:
        """Raise if a component exited, quoting the end of its log."""
        for child in self.children:
            if child.process.poll() is not None:
                tail = child.log.read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(
                    f"{child.name} exited ({child.process.returncode}): " + " | ".join(tail)
                )

    def stop(self) -> None:
        """SIGTERM everything (workers finish their current chunk), then SIGKILL stragglers."""
        for child in self.children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in self.children:
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
        self.children.clear()


def free_port(preferred: int) -> int:
    """`preferred` if nothing listens there, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port")
