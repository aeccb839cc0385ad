"""Running the benchmark scenarios: a model and images of the right size, then the stack."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from shared.settings import Settings
from skuai.bench.batch import print_batch, run_batch
from skuai.console import console
from skuai.demo import DemoPlan, train_demo_model
from skuai.local import running_stack
from skuai.stack import free_port
from training.registry import Registry


def ensure_model(settings: Settings, plan: DemoPlan) -> Registry:
    """The registry to benchmark: SKUAI_REGISTRY's active model, else a small one of its own."""
    registry = Registry(settings.registry_dir)
    if registry.active() is not None:
        return registry
    own = Registry(settings.home / "bench" / "registry")
    if own.active() is None:
        console.print(f"no active model in {registry.root}: training a small one first")
        train_demo_model(settings.home / "bench" / "catalog", own.root, plan)
    return own


def bench_images(settings: Settings, count: int, size: int, seed: int) -> list[Path]:
    """`count` synthetic photos at `size` px, generated once and reused."""
    from training.synth import synthesize

    per_sku = math.ceil(count / 12)
    out = settings.home / "bench" / f"images-{size}px-{per_sku}"
    if not (out / "catalog.json").exists() or len(list(out.rglob("*.png"))) < count:
        synthesize(out, models=4, skus_per_model=3, images_per_sku=per_sku, size=size, seed=seed)
    return sorted(out.rglob("*.png"))[:count]


def run(
    settings: Settings, *, images: int, out: Path | None, quiet: bool = False
) -> dict[str, Any]:
    """The batch scenario end to end; returns the numbers (and writes them to `out`)."""
    plan = DemoPlan()
    registry = ensure_model(settings, plan)
    version = registry.require_active()
    size = int(next(v for v in registry.versions() if v.active).config["input_size"])
    settings = replace(settings, registry=registry.root)
    files = bench_images(settings, images, size, plan.seed)
    with running_stack(settings, api_port=free_port(0), flower_port=free_port(0)) as stack:
        stack.wait_ready(180)
        batch = run_batch(stack, files)
    result: dict[str, Any] = {"model_version": version, "input_size": size, "batch": batch}
    if not quiet:
        print_batch(batch)
    if out is not None:
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result
