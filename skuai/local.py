"""`skuai up`: Redis (reachable or embedded), then the stack, until Ctrl-C."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from shared.api_keys import KeyStore
from shared.redis_client import connect
from shared.settings import Settings
from skuai.console import console
from skuai.preflight import UP_FREE_BYTES, check_stack, redis_for
from skuai.stack import Stack, free_port

READY_TIMEOUT = 180.0
LOCAL_TENANT = "local"
# Ctrl-C, `kill` and a closed terminal all stop the stack in order. The components run in their
# own sessions (a Ctrl-C meant for the stack reaches them only through its orderly stop), so
# dying on one of these signals without stopping them would leave them running.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def local_api_key(settings: Settings) -> str:
    """The local stack's API key: kept in SKUAI_HOME (mode 600) and reused while Redis knows it."""
    path = settings.home / "local-api-key"
    store = KeyStore(connect(settings))
    if path.exists():
        key = path.read_text().strip()
        if store.tenant_of(key) == LOCAL_TENANT:
            return key
    key = store.create(LOCAL_TENANT)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


@contextmanager
def running_stack(
    settings: Settings, *, api_port: int, flower_port: int, inference_workers: int = 1
) -> Iterator[Stack]:
    """Redis and every component up; all of it stopped on exit, whatever happens."""
    with redis_for(settings) as settings:
        stack = Stack(
            settings,
            api_port=free_port(api_port),
            flower_port=free_port(flower_port),
            inference_workers=inference_workers,
        )
        try:
            with _on_stop_signals(_interrupt):
                stack.api_key = local_api_key(settings)
                stack.start()
                yield stack
        finally:
            with _on_stop_signals(signal.SIG_IGN):  # a second Ctrl-C must not cut the stop short
                console.print("stopping the stack...")
                stack.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def _on_stop_signals(handler: Callable[[int, Any], None] | int) -> Iterator[None]:
    """STOP_SIGNALS handled by `handler` inside the block. With `_interrupt`, SIGTERM and SIGHUP
    act as Ctrl-C, and so does SIGINT when this process inherited it ignored (as a job started
    in the background by a script does)."""
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def print_urls(stack: Stack) -> None:
    """Where to look."""
    console.print(f"API      {stack.api_url}")
    console.print(f"API docs {stack.api_url}/docs/")
    console.print(f"Flower   {stack.flower_url}")
    console.print(
        f"API key  {stack.api_key}  (tenant {LOCAL_TENANT}; send it as "
        "'Authorization: Bearer <key>')"
    )
    console.print(f"logs     {stack.settings.home / 'logs'}")


def wait_for_ctrl_c(stack: Stack) -> None:
    """Keep the stack up until Ctrl-C, noticing if a component dies."""
    console.print("press Ctrl-C to stop")
    try:
        while True:
            stack.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("")


def run_up(settings: Settings, *, api_port: int, flower_port: int, inference_workers: int) -> None:
    """Run the stack in the foreground."""
    ports = check_stack(settings, need_bytes=UP_FREE_BYTES, api=api_port, flower=flower_port)
    with running_stack(
        settings, api_port=ports.api, flower_port=ports.flower, inference_workers=inference_workers
    ) as stack:
        with console.status("starting the API, workers and Flower..."):
            try:
                stack.wait_ready(READY_TIMEOUT)
            except TimeoutError:
                console.print(
                    "[yellow]no inference worker is ready yet (is a model active? "
                    "`skuai models list`); the API accepts jobs anyway[/yellow]"
                )
        print_urls(stack)
        wait_for_ctrl_c(stack)
