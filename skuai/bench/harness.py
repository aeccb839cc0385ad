"""`skuai bench`: every scenario in one run on one machine — raw (fp32, bf16 and int8), end to end
as a batch, single-image latency under light and heavy load, and the two baselines; the service
and the baselines run the model in one chosen precision."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from shared.images import decode
from shared.settings import Settings
from skuai.bench.baselines import sync_endpoint, task_per_image
from skuai.bench.batch import run_batch
from skuai.bench.latency import single_jobs
from skuai.bench.models import full_width_random, small_trained
from skuai.bench.raw import raw_throughput
from skuai.bench.report import print_report, write_plot
from skuai.client import SkuaiClient
from skuai.console import console
from skuai.demo import DemoPlan
from skuai.local import running_stack
from skuai.stack import free_port
from training.registry import Registry

HEAVY_CLIENTS = 16


def bench_images(settings: Settings, count: int, size: int, seed: int) -> list[Path]:
    """`count` synthetic photos at `size` px, generated once and reused."""
    from training.synth import synthesize

    per_sku = math.ceil(count / 12)
    out = settings.home / "bench" / f"images-{size}px-{per_sku}"
    if not (out / "catalog.json").exists() or len(list(out.rglob("*.png"))) < count:
        synthesize(out, models=4, skus_per_model=3, images_per_sku=per_sku, size=size, seed=seed)
    return sorted(out.rglob("*.png"))[:count]


def run(
    settings: Settings,
    *,
    size: int,
    images: int,
    out: Path | None,
    plot: Path | None,
    quiet: bool = False,
    precision: str = "fp32",
    precisions: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Every scenario at `size` px, served in `precision`; returns the numbers (and writes JSON
    and a plot). The raw phase times `precisions` (default: those this CPU runs natively), and
    always fp32 and the served precision."""
    from shared.errors import ConfigError
    from skuai.quiet import import_tensorflow_quietly
    from training.precision import allow_for_timing, describe, precision_allowed

    import_tensorflow_quietly()
    plan = DemoPlan()
    files = bench_images(settings, images, size, plan.seed)
    if size == plan.image_size:
        registry = small_trained(settings, plan)
    else:
        registry = full_width_random(settings, size, files[0].parent.parent.parent)
    version = registry.require_active()
    # The benchmark measures throughput, not admission control: lift the per-key rate limit.
    settings = replace(
        settings,
        registry=registry.root,
        rate_limit=100_000.0,
        rate_burst=100_000,
        inference_precision=precision,
    )
    result: dict[str, Any] = {
        "input_size": size,
        "model_version": version,
        "images": len(files),
        "precision": precision,
    }
    trained = size == plan.image_size
    timed = raw_precisions(precisions, precision)
    result["raw"] = _raw(registry, version, files, trained=trained, precisions=timed)
    if precision != "fp32" and not trained:
        allow_for_timing(registry.path(version), precision)
    if precision != "fp32" and not precision_allowed(registry.path(version), precision):
        check = result["raw"][f"{precision}_accuracy_check"]
        raise ConfigError(f"{version} may not be served in {precision}: {describe(check)}")
    with running_stack(settings, api_port=free_port(0), flower_port=free_port(0)) as stack:
        stack.wait_ready(300)
        client = SkuaiClient(stack.api_url, key=stack.api_key, timeout=600)
        console.print("end to end: one batch through the API and a worker")
        result["end_to_end"] = run_batch(client, files, stack.memory_roots())
        console.print("single-image jobs: light and heavy load")
        result["single_light"] = single_jobs(client, files[:20], concurrency=1)
        result["single_heavy"] = single_jobs(
            client, files[: max(40, len(files) // 4)], concurrency=HEAVY_CLIENTS
        )
        console.print("baseline: one Celery task per image")
        result["baseline_task_per_image"] = task_per_image(stack, files)
    console.print("baseline: synchronous predict per request")
    result["baseline_sync_endpoint"] = sync_endpoint(
        registry.root, files, settings.home / "logs" / "sync-baseline.log", precision
    )
    _ratios(result)
    if not quiet:
        print_report(result)
    if out is not None:
        out.write_text(json.dumps(result, indent=2) + "\n")
    if plot is not None:
        write_plot(result, plot)
    return result


def raw_precisions(asked: tuple[str, ...] | None, served: str) -> tuple[str, ...]:
    """The precisions the raw phase times: `asked` and the served one; by default fp32 and the
    ones this CPU runs natively (an emulated bf16 can take many minutes at 224 px). fp32 at
    224 px alone takes minutes on 2 cores: `--precisions bf16 --precision bf16` skips it."""
    from shared.cpu import native_precisions

    wanted = native_precisions() if asked is None else asked
    return tuple(p for p in ("fp32", "bf16", "int8") if p == served or p in wanted)


def _raw(
    registry: Registry,
    version: str,
    files: list[Path],
    *,
    trained: bool,
    precisions: tuple[str, ...],
) -> dict[str, Any]:
    from training.cascade import Cascade
    from training.precision import check_precision
    from training.quantize import quantize_version

    folder = registry.path(version)
    fp32 = Cascade.load(folder, version=version)
    pixels = np.stack(
        [decode(p.read_bytes(), size=fp32.input_size, max_pixels=10**8) for p in files[:128]]
    )
    others = [p for p in precisions if p != "fp32"]
    console.print(f"raw: the cascade in-process on decoded tensors ({', '.join(precisions)})")
    raw: dict[str, Any] = {}
    if "fp32" in precisions:
        began = time.perf_counter()
        raw["fp32"] = raw_throughput(fp32, pixels)
        if others:
            took = time.perf_counter() - began
            console.print(
                f"raw fp32 took {took:.0f} s; {', '.join(others)} will take about as long each "
                "where the CPU runs them natively"
            )
    if trained:  # the int8 check quantizes with training images
        for precision in others:
            raw[f"{precision}_accuracy_check"] = check_precision(registry, version, precision)
    elif "int8" in others:  # random weights (224 px): timing only, int8 calibrated here
        quantize_version(folder, pixels[:32], np.zeros(32, dtype=np.int32))
    for precision in others:
        cascade = Cascade.load(folder, version=version, precision=precision)
        raw[precision] = raw_throughput(cascade, pixels)
        if "fp32" in raw:
            raw[f"{precision}_speedup"] = round(
                raw[precision]["images_per_second"] / raw["fp32"]["images_per_second"], 2
            )
    return raw


def _ratios(result: dict[str, Any]) -> None:
    e2e = result["end_to_end"]["end_to_end_images_per_second"]
    precision = result["precision"]
    raw = result["raw"][precision]["images_per_second"]
    result["ratios"] = {
        f"end_to_end_vs_raw_{precision}": round(e2e / raw, 2),
        "end_to_end_vs_sync_endpoint": round(
            e2e / result["baseline_sync_endpoint"]["images_per_second"], 2
        ),
        "end_to_end_vs_task_per_image": round(
            e2e / result["baseline_task_per_image"]["images_per_second"], 2
        ),
    }
