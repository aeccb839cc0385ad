"""The `skuai` command line (README.md#command-line). Heavy imports happen inside the commands
that need them, so `skuai api` and `skuai --help` never load TensorFlow."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import redis

from shared import defaults
from shared.errors import SkuaiError
from skuai.cli_base import fail, settings
from skuai.cli_clients import bench, keys, submit
from skuai.cli_config import config
from skuai.cli_data import data
from skuai.cli_export import models_export
from skuai.cli_feedback import feedback, keys_review
from skuai.cli_models import models
from skuai.cli_shadow import models_compare, models_shadow
from skuai.cli_training import synth, train
from skuai.cli_tune import tune
from skuai.console import console

# TensorFlow's C++ start-up chatter is noise for users of the command line (and its children).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _Group(click.Group):
    """Turns every error a user can cause into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SkuaiError as exc:
            fail(exc.message)
        except ValueError as exc:  # argument validation in the library code
            fail(str(exc))
        except redis.RedisError as exc:
            fail(
                f"Redis at {os.environ.get('SKUAI_REDIS_URL', defaults.REDIS_URL)} "
                f"is unreachable ({exc.__class__.__name__})"
            )
        except KeyboardInterrupt:
            console.print("interrupted")
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="skuai")
def cli() -> None:
    """skuai: sneaker model and SKU prediction as a service."""


@cli.command()
@click.option("--port", default=defaults.API_PORT, show_default=True, help="API port.")
@click.option("--flower-port", default=defaults.FLOWER_PORT, show_default=True)
@click.option("--exit", "exit_after", is_flag=True, help="Stop after showing the results.")
def demo(port: int, flower_port: int, exit_after: bool) -> None:
    """Synthesize a catalog, train a small cascade, start the stack and classify through the API."""
    from skuai.demo import run_demo

    run_demo(settings(), api_port=port, flower_port=flower_port, keep_running=not exit_after)


@cli.command()
@click.option("--port", default=defaults.API_PORT, show_default=True, help="API port.")
@click.option("--flower-port", default=defaults.FLOWER_PORT, show_default=True)
@click.option("--workers", default=1, show_default=True, help="Inference worker processes.")
def up(port: int, flower_port: int, workers: int) -> None:
    """Run the whole stack locally until Ctrl-C (starts an embedded Redis if none is reachable)."""
    from skuai.local import run_up

    run_up(settings(), api_port=port, flower_port=flower_port, inference_workers=workers)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=defaults.API_PORT, show_default=True)
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
def api(host: str, port: int, workers: int) -> None:
    """Run the HTTP API."""
    from skuai.serve import run_api

    run_api(settings(), host=host, port=port, workers=workers)


@cli.command()
@click.option(
    "--queues",
    default="interactive,inference",
    show_default=True,
    help="Comma-separated: interactive, inference, webhooks.",
)
@click.option(
    "--concurrency",
    default=1,
    show_default=True,
    help="Pool processes (one per GPU for inference).",
)
@click.option("--name", default="worker", show_default=True, help="Node name prefix.")
@click.option("--gpus", default=None, help="GPU indices, e.g. 0,1: one pool process per GPU.")
def worker(queues: str, concurrency: int, name: str, gpus: str | None) -> None:
    """Run a Celery worker."""
    from skuai.serve import parse_queues, run_worker
    from worker.devices import GPUS_ENV, parse_gpus

    if concurrency < 1:
        raise ValueError("--concurrency must be at least 1")
    if gpus is not None:
        concurrency = len(parse_gpus(gpus))
        os.environ[GPUS_ENV] = gpus
    run_worker(settings(), queues=parse_queues(queues), concurrency=concurrency, name=name)


@cli.command()
@click.option("--port", default=defaults.FLOWER_PORT, show_default=True)
def flower(port: int) -> None:
    """Run Flower, the Celery monitoring UI."""
    from skuai.serve import run_flower

    run_flower(settings(), port=port)


for _command in (synth, data, train, tune, models, submit, bench, keys, config, feedback):
    cli.add_command(_command)
keys.add_command(keys_review)
models.add_command(models_export)
models.add_command(models_shadow)
models.add_command(models_compare)


def main() -> None:
    """Entry point of the `skuai` script."""
    cli(prog_name="skuai")
