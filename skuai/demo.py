"""`skuai demo`: the main job end to end on embedded defaults, on a fresh machine."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.table import Table

from shared.settings import Settings
from skuai.client import SkuaiClient
from skuai.console import console, make_progress, training_events
from skuai.local import print_urls, running_stack, wait_for_ctrl_c
from skuai.preflight import DEMO_FREE_BYTES, check_stack, redis_for
from training.config import TrainConfig

READY_TIMEOUT = 180.0


@dataclass(frozen=True)
class DemoPlan:
    """How big the demo is: small enough for a few minutes on 2 CPU cores, and trained long
    enough that its held-out SKU top-1 does not hang on the seed. With 50 photos per SKU, 12
    epochs and batches of 32, stage 1 had not settled and two runs of seed 7 gave 68% and 83%
    (docs/training.md, "Reproducibility and the demo")."""

    models: int = 4
    skus_per_model: int = 3
    images_per_sku: int = 80
    image_size: int = 64
    epochs: int = 20  # at most: early stopping ends a run once validation loss stops falling
    batch_size: int = 16  # more, smaller steps: 672 training photos make 42 steps an epoch
    width: float = 0.25
    seed: int = 7

    def train_config(self, seed: int | None = None) -> TrainConfig:
        """The training settings of this plan (with another seed, for experiments)."""
        return TrainConfig(
            input_size=self.image_size,
            epochs=self.epochs,
            batch_size=self.batch_size,
            width=self.width,
            weights="none",
            seed=self.seed if seed is None else seed,
        )


def run_demo(
    settings: Settings,
    *,
    api_port: int,
    flower_port: int,
    keep_running: bool,
    plan: DemoPlan | None = None,
) -> dict[str, float]:
    """Synthesize, train, serve, classify the held-out images over HTTP, report accuracy."""
    plan = plan or DemoPlan()
    root = settings.home / "demo"
    settings = replace(settings, registry=root / "registry")
    started = time.perf_counter()
    # Everything the demo needs is checked (and Redis started) before minutes of training.
    ports = check_stack(settings, need_bytes=DEMO_FREE_BYTES, api=api_port, flower=flower_port)
    with redis_for(settings) as settings:
        catalog = _synthesize(root / "catalog", plan)
        test_samples = _train(catalog, settings.registry_dir, plan)
        with running_stack(settings, api_port=ports.api, flower_port=ports.flower) as stack:
            with console.status("starting the API, the workers and Flower..."):
                stack.wait_ready(READY_TIMEOUT)
            jobs = _classify(SkuaiClient(stack.api_url, key=stack.api_key), test_samples)
            accuracy = _report(jobs, test_samples)
            console.print(f"demo finished in {time.perf_counter() - started:.0f} s")
            print_urls(stack)
            if keep_running:
                wait_for_ctrl_c(stack)
    return accuracy


def _synthesize(out: Path, plan: DemoPlan) -> Path:
    from training.synth import synthesize

    shutil.rmtree(out, ignore_errors=True)
    total = plan.models * plan.skus_per_model * plan.images_per_sku
    with make_progress() as progress:
        task = progress.add_task("1/4 drawing a synthetic catalog", total=total)
        synthesize(
            out,
            models=plan.models,
            skus_per_model=plan.skus_per_model,
            images_per_sku=plan.images_per_sku,
            size=plan.image_size,
            seed=plan.seed,
            progress=lambda n: progress.advance(task, n),
        )
    return out


def _train(catalog: Path, registry_dir: Path, plan: DemoPlan) -> list[Any]:
    """Train the demo cascade and return the held-out test samples: those of the version's own
    split.json, where copies of a photo never sit on both sides."""
    train_demo_model(catalog, registry_dir, plan)
    from training.registry import Registry
    from training.split_record import recorded_samples

    registry = Registry(registry_dir)
    return recorded_samples(registry.path(registry.require_active()), catalog, "test")


def train_demo_model(catalog: Path, registry_dir: Path, plan: DemoPlan) -> None:
    """Synthesize (if needed) and train the small demo cascade into a fresh registry."""
    from skuai.quiet import import_tensorflow_quietly
    from training.evaluate import summary_rows
    from training.registry import Registry
    from training.train import train

    if not (catalog / "catalog.json").exists():
        _synthesize(catalog, plan)
    shutil.rmtree(registry_dir, ignore_errors=True)
    import_tensorflow_quietly()
    config = plan.train_config()
    console.print("2/4 training the cascade (stage 1: grayscale -> model; stage 2: colour -> SKU)")
    with training_events(enabled=True) as events:
        outcome = train(catalog, Registry(registry_dir), config, events=events)
    for name, value in summary_rows(outcome.metrics):
        console.print(f"    {name:<34} {value}")


def _classify(client: SkuaiClient, samples: list[Any]) -> list[dict[str, Any]]:
    console.print(f"3/4 sending the {len(samples)} held-out images through the HTTP API as a batch")
    refs = [f"{sample.sku}/{sample.path.name}" for sample in samples]
    batch = client.create_batch(list(zip(refs, (s.path for s in samples), strict=True)))
    with make_progress() as progress:
        task = progress.add_task("classified", total=batch["total"])
        while batch["status"] not in ("completed", "canceled"):
            time.sleep(0.3)
            batch = client.batch(batch["id"])
            counts = batch["counts"]
            progress.update(task, completed=counts["succeeded"] + counts["failed"])
    jobs = client.results(batch["id"])
    by_ref = {job["ref"]: job for job in jobs}
    return [by_ref[ref] for ref in refs]


def _report(jobs: list[dict[str, Any]], samples: list[Any]) -> dict[str, float]:
    console.print("4/4 results")
    table = Table("image", "true SKU", "predicted SKU", "confidence", "decision", "")
    model_hits = sku_hits = 0
    decided: dict[str, int] = {}
    for job, sample in zip(jobs, samples, strict=True):
        result = job.get("result") or {}
        error = job.get("error") or {}
        predicted = result.get("sku", {}).get("label") or error.get("code", "?")
        model_hits += result.get("model", {}).get("label") == sample.model
        hit = predicted == sample.sku
        sku_hits += hit
        decision = result.get("decision") or "-"
        decided[decision] = decided.get(decision, 0) + 1
        if table.row_count < 12:
            confidence = result.get("sku", {}).get("confidence")
            table.add_row(
                job.get("ref") or "",
                sample.sku,
                predicted,
                f"{confidence:.2f}" if confidence is not None else "-",
                decision,
                "[green]ok[/green]" if hit else "[red]miss[/red]",
            )
    console.print(table)
    n = max(1, len(jobs))
    versions = sorted({str(j.get("model_version")) for j in jobs})
    console.print(
        f"model accuracy {model_hits / n:.1%}   SKU accuracy {sku_hits / n:.1%}   "
        f"({len(jobs)} held-out images, model version {', '.join(versions)})"
    )
    console.print(
        "decisions: " + ", ".join(f"{count} {name}" for name, count in sorted(decided.items()))
    )
    return {"model_accuracy": model_hits / n, "sku_accuracy": sku_hits / n}
