"""Commands that talk to a running service or Redis: `skuai submit`, `skuai bench`, `skuai keys`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from shared import defaults
from shared.decisions import DECISIONS
from skuai.cli_base import fail, settings
from skuai.console import console


@click.command()
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
    state_file = sub.state_path(settings().home, parts)
    state = sub.SubmitState.load_or_plan(state_file, api, parts)
    client = SkuaiClient(api, key=key)
    try:
        sub.upload(client, state, state_file)
    except (SkuaiError, KeyboardInterrupt) as exc:
        reason = exc.message if isinstance(exc, SkuaiError) else "interrupted"
        fail(f"{reason}; run the same command again to resume")
    ids = [p.batch_id for p in state.parts if p.batch_id]
    console.print(
        f"{len(images)} images and {len(archives)} archives in batch(es): "
        + ", ".join(str(i) for i in ids)
    )
    if wait_done or out is not None:
        batches = sub.wait(client, state)
        counts = {s: sum(b["counts"][s] for b in batches) for s in ("succeeded", "failed")}
        decided = {d: sum(b.get("decisions", {}).get(d, 0) for b in batches) for d in DECISIONS}
        console.print(
            f"classified: {counts['succeeded']} succeeded, {counts['failed']} failed; "
            + ", ".join(f"{decided[d]} {d}" for d in DECISIONS)
        )
    if out is not None:
        sub.export(client, state, out)
        console.print(f"results written to {out}")


@click.command()
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
@click.option(
    "--precision",
    default="fp32",
    show_default=True,
    type=click.Choice(["fp32", "bf16", "int8"]),
    help="Precision the service and the baselines run the model in.",
)
@click.option(
    "--precisions",
    default=None,
    help="Comma-separated precisions the raw phase times, e.g. fp32,bf16,int8 [default: fp32 "
    "and those this CPU runs natively; the served one is always timed].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def bench(
    size: int,
    images: int | None,
    out: Path | None,
    plot: Path | None,
    precision: str,
    precisions: str | None,
    as_json: bool,
) -> None:
    """Measure raw, end-to-end and baseline throughput, and single-image latency, in one run."""
    from skuai.bench.harness import run

    if size < 32 or size % 32:
        raise ValueError("--size must be a multiple of 32, at least 32")
    count = images if images is not None else (1000 if size == 64 else 64)
    if count < 20:
        raise ValueError("--images must be at least 20")
    timed = None
    if precisions is not None:
        timed = tuple(p.strip() for p in precisions.split(",") if p.strip())
        unknown = sorted(set(timed) - {"fp32", "bf16", "int8"})
        if unknown or not timed:
            raise ValueError(
                f"--precisions takes fp32, bf16 and int8, comma-separated; got {precisions!r}"
            )
    result = run(
        settings(),
        size=size,
        images=count,
        out=out,
        plot=plot,
        quiet=as_json,
        precision=precision,
        precisions=timed,
    )
    if as_json:
        click.echo(json.dumps(result))


@click.group()
def keys() -> None:
    """API keys and tenants."""


def _key_store() -> Any:
    from shared.api_keys import KeyStore
    from shared.redis_client import connect

    return KeyStore(connect(settings()))


@keys.command("create")
@click.option("--tenant", required=True, help="Tenant name (created with its first key).")
@click.option("--json", "as_json", is_flag=True)
def keys_create(tenant: str, as_json: bool) -> None:
    """Print a new API key and the tenant's webhook signing secret."""
    from shared.redis_client import connect
    from shared.webhook_store import WebhookStore

    key = _key_store().create(tenant)
    secret = WebhookStore(connect(settings())).tenant_secret(tenant)
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
