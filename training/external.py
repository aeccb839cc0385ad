"""Evaluating a registered version on a whole dataset folder it was not trained on (for example a
catalog drawn with `skuai synth --variation hard`): every image is test data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.errors import DatasetError
from training.registry import Registry


def evaluate_folder(
    registry: Registry,
    version: str,
    data_dir: Path,
    *,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The version's metrics on every image under DATA, whose models and SKUs it must know."""
    from training.cascade import Cascade
    from training.dataset import scan
    from training.evaluate import evaluate
    from training.labels import Labels
    from training.loading import load_arrays

    folder = registry.path(version)
    known = Labels.load(folder / "labels.json")
    _, samples = scan(data_dir)
    unknown = sorted({f"{s.model}/{s.sku}" for s in samples if not _knows(known, s.model, s.sku)})
    if unknown:
        shown = ", ".join(unknown[:3]) + (
            f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        )
        raise DatasetError(f"{data_dir} has SKUs that version {version} does not know: {shown}")
    cascade = Cascade.load(folder, version=version)
    arrays = load_arrays(samples, known, size=cascade.input_size, progress=progress)
    metrics = evaluate(cascade, arrays)
    metrics["skipped_images"] = len(arrays.skipped)
    return metrics


def _knows(labels: Any, model: str, sku: str) -> bool:
    index = labels.sku_index.get(sku)
    return index is not None and labels.models[labels.model_of_sku[index]] == model
