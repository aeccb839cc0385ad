"""`skuai up`: Redis (reachable or embedded), then the stack, until Ctrl-C."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from shared.settings import Settings
from skuai.console import console
from skuai.redis_server import ensure_redis
from skuai.stack import Stack, free_port

READY_TIMEOUT = 180.0


@contextmanager
def running_stack(
    settings: Settings, *, api_port: int, flower_port: int, inference_workers: int = 1
) -> Iterator[Stack]:
    """Redis and every component up; all of it stopped on exit, whatever happens."""
    server = ensure_redis(settings.redis_url, settings.home / "redis")
    if server is not None:
        console.print(f"started an embedded Redis at {server.url} (data in {server.data_dir})")
        settings = replace(settings, redis_url=server.url)
    stack = Stack(
        settings,
        api_port=free_port(api_port),
        flower_port=free_port(flower_port),
        inference_workers=inference_workers,
    )
    try:
        stack.start()
        yield stack
    finally:
        console.print("stopping the stack...")
        stack.stop()
        if server is not None:
            server.stop()


def print_urls(stack: Stack) -> None:
    """Where to look."""
    console.print(f"API      {stack.api_url}")
    console.print(f"API docs {stack.api_url}/docs/")
    console.print(f"Flower   {stack.flower_url}")
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
    with running_stack(
        settings, api_port=api_port, flower_port=flower_port, inference_workers=inference_workers
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
