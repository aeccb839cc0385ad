"""Models for the benchmark: the small trained demo cascade, or a full-width VGG16 cascade with
random weights at 224 px (the production shape; its speed does not depend on its weights)."""

from __future__ import annotations

import json
from pathlib import Path

from shared.settings import Settings
from skuai.console import console
from skuai.demo import DemoPlan, train_demo_model
from training.registry import Registry


def small_trained(settings: Settings, plan: DemoPlan) -> Registry:
    """SKUAI_REGISTRY's active model if it is at the small size, else the bench's own."""
    registry = Registry(settings.registry_dir)
    active = registry.active()
    if active is not None and _input_size(registry, active) == plan.image_size:
        return registry
    own = Registry(settings.home / "bench" / "registry")
    if own.active() is None:
        console.print("training the small benchmark cascade first")
        train_demo_model(settings.home / "bench" / "catalog", own.root, plan)
    return own


def full_width_random(settings: Settings, size: int, data_dir: Path) -> Registry:
    """A full-width cascade at `size` px with random weights, registered once and reused."""
    from training.architecture import build_stage1, build_stage2
    from training.dataset import scan

    registry = Registry(settings.home / "bench" / f"registry-{size}px")
    if registry.active() is not None:
        return registry
    console.print(f"building a full-width {size}-px VGG16 cascade (random weights) for timing")
    labels, _ = scan(data_dir)
    version, folder = registry.new_version()
    stage1 = build_stage1(len(labels.models), input_size=size)
    # A trained stage 1 is sure of most images, so stage 2 runs once per image; random weights
    # would leave it unsure and triple stage 2's work. A strong bias on one class restores the
    # common case (the timing does not depend on which class wins).
    kernel, bias = stage1.get_layer("model").get_weights()
    bias[0] = 20.0
    stage1.get_layer("model").set_weights([kernel * 0.0, bias])
    stage1.save(folder / "stage1.keras")
    build_stage2(labels.membership, len(labels.skus), input_size=size).save(folder / "stage2.keras")
    labels.save(folder / "labels.json")
    config = {
        "input_size": size,
        "width": 1.0,
        "weights": "random (timing only)",
        "data_dir": str(data_dir),
        "seed": 0,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "metrics.json").write_text(json.dumps({"note": "random weights"}) + "\n")
    registry.activate(version)
    return registry


def _input_size(registry: Registry, version: str) -> int:
    return int(json.loads((registry.path(version) / "config.json").read_text())["input_size"])
