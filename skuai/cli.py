"""The `skuai` command line (SPEC section 3). Heavy imports happen inside the commands that need
them, so `skuai api` and `skuai --help` never load TensorFlow."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
import redis

from shared import defaults
from shared.errors import SkuaiError
from shared.settings import Settings
from skuai.console import console

# TensorFlow's C++ start-up chatter is noise for users of the command line (and its children).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _Group(click.Group):
    """Turns every error a user can cause into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SkuaiError as exc:
            _fail(exc.message)
        except ValueError as exc:  # argument validation in the library code
            _fail(str(exc))
        except redis.RedisError as exc:
            _fail(
                f"Redis at {os.environ.get('SKUAI_REDIS_URL', defaults.REDIS_URL)} "
                f"is unreachable ({exc.__class__.__name__})"
            )
        except KeyboardInterrupt:
            console.print("interrupted")
            sys.exit(130)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _settings() -> Settings:
    return Settings.from_env()


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

    run_demo(_settings(), api_port=port, flower_port=flower_port, keep_running=not exit_after)


@cli.command()
@click.option("--port", default=defaults.API_PORT, show_default=True, help="API port.")
@click.option("--flower-port", default=defaults.FLOWER_PORT, show_default=True)
@click.option("--workers", default=1, show_default=True, help="Inference worker processes.")
def up(port: int, flower_port: int, workers: int) -> None:
    """Run the whole stack locally until Ctrl-C (starts an embedded Redis if none is reachable)."""
    from skuai.local import run_up

    run_up(_settings(), api_port=port, flower_port=flower_port, inference_workers=workers)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=defaults.API_PORT, show_default=True)
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
def api(host: str, port: int, workers: int) -> None:
    """Run the HTTP API."""
    from skuai.serve import run_api

    run_api(_settings(), host=host, port=port, workers=workers)


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
    settings = _settings()
    run_worker(settings, queues=parse_queues(queues), concurrency=concurrency, name=name)


@cli.command()
@click.option("--port", default=defaults.FLOWER_PORT, show_default=True)
def flower(port: int) -> None:
    """Run Flower, the Celery monitoring UI."""
    from skuai.serve import run_flower

    run_flower(_settings(), port=port)


@cli.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--models", default=4, show_default=True)
@click.option("--skus-per-model", default=3, show_default=True)
@click.option("--images-per-sku", default=30, show_default=True)
@click.option("--size", default=64, show_default=True, help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--format",
    "image_format",
    default="png",
    show_default=True,
    type=click.Choice(["png", "jpg", "webp"]),
)
def synth(
    out: Path,
    models: int,
    skus_per_model: int,
    images_per_sku: int,
    size: int,
    seed: int,
    image_format: str,
) -> None:
    """Write a synthetic sneaker catalog to OUT/<model>/<sku>/."""
    from skuai.console import make_progress
    from training.synth import synthesize

    total = models * skus_per_model * images_per_sku
    with make_progress(transient=True) as progress:  # erased: the summary line follows
        task = progress.add_task("drawing sneakers", total=total)
        catalog = synthesize(
            out,
            models=models,
            skus_per_model=skus_per_model,
            images_per_sku=images_per_sku,
            size=size,
            seed=seed,
            image_format=image_format,
            progress=lambda n: progress.advance(task, n),
        )
    console.print(
        f"wrote {total} images of {len(catalog.models)} models and "
        f"{len(catalog.skus)} SKUs to {out}"
    )


@cli.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--registry",
    type=click.Path(path_type=Path),
    default=None,
    help="Registry folder (default: SKUAI_REGISTRY, or SKUAI_HOME/registry).",
)
@click.option("--input-size", default=224, show_default=True)
@click.option("--epochs", default=20, show_default=True)
@click.option("--batch-size", default=32, show_default=True)
@click.option("--weights", default="imagenet", show_default=True, help="imagenet, none or PATH.")
@click.option(
    "--width",
    default=1.0,
    show_default=True,
    help="Channel width multiplier: below 1 only for tests and demos.",
)
@click.option("--seed", default=0, show_default=True)
@click.option("--no-activate", is_flag=True, help="Register the version without activating it.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def train(
    data: Path,
    registry: Path | None,
    input_size: int,
    epochs: int,
    batch_size: int,
    weights: str,
    width: float,
    seed: int,
    no_activate: bool,
    as_json: bool,
) -> None:
    """Train both stages on DATA, evaluate on the held-out split, write a new model version."""
    from skuai.console import training_events
    from skuai.quiet import import_tensorflow_quietly
    from training.config import TrainConfig
    from training.dataset import scan
    from training.evaluate import summary_rows
    from training.registry import Registry
    from training.train import train as run_training

    config = TrainConfig(
        input_size=input_size,
        epochs=epochs,
        batch_size=batch_size,
        weights=weights,
        width=width,
        seed=seed,
    )
    reg = Registry(registry or _settings().registry_dir)
    scan(data)  # a bad dataset is reported before TensorFlow loads
    import_tensorflow_quietly()
    with training_events(enabled=not as_json) as events:
        outcome = run_training(data, reg, config, activate=not no_activate, events=events)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "version": outcome.version,
                    "path": str(outcome.path),
                    "activated": outcome.activated,
                    "metrics": outcome.metrics,
                }
            )
        )
        return
    for name, value in summary_rows(outcome.metrics):
        console.print(f"  {name:<34} {value}")
    state = "active" if outcome.activated else "not activated"
    console.print(f"version {outcome.version} written to {outcome.path} ({state})")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--api",
    envvar="SKUAI_API_URL",
    default=f"http://127.0.0.1:{defaults.API_PORT}",
    show_default=True,
    help="API base URL (or SKUAI_API_URL).",
)
@click.option("--key", envvar="SKUAI_API_KEY", default=None, help="API key (or SKUAI_API_KEY).")
@click.option("--wait", "wait_done", is_flag=True, help="Wait until every image is classified.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the results to FILE.csv or FILE.jsonl (implies --wait).",
)
@click.option("--part-size", default=500, show_default=True, help="Images per upload request.")
def submit(
    paths: tuple[Path, ...],
    api: str,
    key: str | None,
    wait_done: bool,
    out: Path | None,
    part_size: int,
) -> None:
    """Upload images, folders or archives as a batch; resumes if interrupted."""
    from shared.errors import SkuaiError
    from skuai import submit as sub
    from skuai.client import SkuaiClient

    if out is not None and out.suffix.lower() not in {".csv", ".jsonl", ".ndjson"}:
        raise ValueError("--out must end in .csv or .jsonl")
    if part_size < 1:
        raise ValueError("--part-size must be at least 1")
    images, archives = sub.collect(list(paths))
    parts = sub.plan(images, archives, part_size, api)
    state_file = sub.state_path(_settings().home, parts)
    state = sub.SubmitState.load_or_plan(state_file, api, parts)
    client = SkuaiClient(api, key=key)
    try:
        sub.upload(client, state, state_file)
    except (SkuaiError, KeyboardInterrupt) as exc:
        reason = exc.message if isinstance(exc, SkuaiError) else "interrupted"
        _fail(f"{reason}; run the same command again to resume")
    ids = [p.batch_id for p in state.parts if p.batch_id]
    console.print(
        f"{len(images)} images and {len(archives)} archives in batch(es): "
        + ", ".join(str(i) for i in ids)
    )
    if wait_done or out is not None:
        batches = sub.wait(client, state)
        counts = {s: sum(b["counts"][s] for b in batches) for s in ("succeeded", "failed")}
        console.print(f"classified: {counts['succeeded']} succeeded, {counts['failed']} failed")
    if out is not None:
        sub.export(client, state, out)
        console.print(f"results written to {out}")


@cli.command()
@click.option(
    "--size",
    default=64,
    show_default=True,
    help="Input size: 64 (the small trained cascade) or e.g. 224 (full width).",
)
@click.option(
    "--images",
    default=None,
    type=int,
    help="Images per scenario (default: 1000 at 64 px, 64 at larger sizes).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the numbers to this JSON file.",
)
@click.option(
    "--plot",
    type=click.Path(path_type=Path),
    default=None,
    help="Also draw a bar chart to this PNG file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def bench(
    size: int, images: int | None, out: Path | None, plot: Path | None, as_json: bool
) -> None:
    """Measure raw, end-to-end and baseline throughput, and single-image latency, in one run."""
    from skuai.bench.harness import run

    if size < 32 or size % 32:
        raise ValueError("--size must be a multiple of 32, at least 32")
    count = images if images is not None else (1000 if size == 64 else 64)
    if count < 20:
        raise ValueError("--images must be at least 20")
    result = run(_settings(), size=size, images=count, out=out, plot=plot, quiet=as_json)
    if as_json:
        click.echo(json.dumps(result))


@cli.group()
def keys() -> None:
    """API keys and tenants."""


def _key_store() -> Any:
    from shared.api_keys import KeyStore
    from shared.redis_client import connect

    return KeyStore(connect(_settings()))


@keys.command("create")
@click.option("--tenant", required=True, help="Tenant name (created with its first key).")
@click.option("--json", "as_json", is_flag=True)
def keys_create(tenant: str, as_json: bool) -> None:
    """Print a new API key and the tenant's webhook signing secret."""
    from shared.redis_client import connect
    from shared.webhook_store import WebhookStore

    key = _key_store().create(tenant)
    secret = WebhookStore(connect(_settings())).tenant_secret(tenant)
    if as_json:
        click.echo(json.dumps({"tenant": tenant, "api_key": key, "webhook_secret": secret}))
        return
    click.echo(f"tenant          {tenant}")
    click.echo(f"API key         {key}")
    click.echo(f"webhook secret  {secret}  (signs this tenant's callback_url deliveries)")


@keys.command("list")
@click.option("--tenant", default=None)
@click.option("--json", "as_json", is_flag=True)
def keys_list(tenant: str | None, as_json: bool) -> None:
    """List keys (by id; the keys themselves are never stored)."""
    infos = _key_store().list(tenant)
    if as_json:
        click.echo(json.dumps([i.to_public() for i in infos]))
        return
    for info in infos:
        click.echo(f"{info.id}  {info.tenant:<20} created {info.created_at}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by the id `skuai keys list` shows."""
    info = _key_store().revoke(key_id)
    click.echo(f"revoked key {info.id} of tenant {info.tenant}")


@cli.group()
def models() -> None:
    """The model registry."""


@models.command("list")
@click.option("--registry", type=click.Path(path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True)
def models_list(registry: Path | None, as_json: bool) -> None:
    """List versions with their test metrics; * marks the active one."""
    from training.registry import Registry

    versions = Registry(registry or _settings().registry_dir).versions()
    rows = [
        {
            "version": v.name,
            "active": v.active,
            "sku_top1": v.metrics.get("end_to_end", {}).get("sku_top1"),
            "model_top1": v.metrics.get("end_to_end", {}).get("model_top1"),
            "input_size": v.config.get("input_size"),
        }
        for v in versions
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        console.print("no model versions yet: run `skuai train DATA`")
    for row in rows:
        mark = "*" if row["active"] else " "
        sku = f"{row['sku_top1']:.2%}" if row["sku_top1"] is not None else "-"
        click.echo(f"{mark} {row['version']:<6} input {row['input_size']}px  SKU top-1 {sku}")


@models.command("activate")
@click.argument("version")
@click.option("--registry", type=click.Path(path_type=Path), default=None)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "int8"]),
    default="fp32",
    show_default=True,
    help="int8: quantize and check accuracy on the test split before activating.",
)
def models_activate(version: str, registry: Path | None, precision: str) -> None:
    """Make VERSION the active model (workers switch between chunks)."""
    from training.registry import Registry

    reg = Registry(registry or _settings().registry_dir)
    reg.path(version)
    if precision == "int8":
        from skuai.quiet import import_tensorflow_quietly
        from training.precision import check_int8, describe

        import_tensorflow_quietly()
        with console.status(f"quantizing {version} and checking int8 accuracy..."):
            verdict = check_int8(reg, version)
        click.echo(describe(verdict))
        if not verdict["allowed"]:
            _fail(
                f"int8 loses too much accuracy; {version} was not activated "
                "(activate it in fp32, without --precision)"
            )
    reg.activate(version)
    click.echo(f"{version} is now active")


def main() -> None:
    """Entry point of the `skuai` script."""
    cli(prog_name="skuai")
