"""Evaluating a registered version on a whole dataset folder it was not trained on (for example a
catalog drawn with `skuai synth --variation hard`): every image is test data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.errors import DatasetError
from training.dataset import Sample
from training.registry import Registry


def evaluate_folder(
    registry: Registry,
    version: str,
    data_dir: Path,
    *,
    test_split: bool = False,
    corruption_seed: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The version's metrics on every image under DATA (with `test_split`, on the version's own
    held-out split of it), whose models and SKUs it must know; with a `corruption_seed`, also
    under the corruption suite (training.robustness), as `metrics["corruptions"]`."""
    from training.cascade import Cascade
    from training.evaluate import evaluate
    from training.labels import Labels
    from training.loading import load_arrays

    folder = registry.path(version)
    known = Labels.load(folder / "labels.json")
    samples = folder_samples(registry, version, data_dir, test_split=test_split)
    cascade = Cascade.load(folder, version=version)
    arrays = load_arrays(samples, known, size=cascade.input_size, progress=progress)
    metrics = evaluate(cascade, arrays)
    metrics["skipped_images"] = len(arrays.skipped)
    if corruption_seed is not None:
        from training.robustness import evaluate_corruptions

        metrics["corruptions"] = evaluate_corruptions(
            cascade,
            samples,
            known,
            clean_metrics=metrics,
            seed=corruption_seed,
            progress=progress,
        )
    return metrics


def folder_samples(
    registry: Registry, version: str, data_dir: Path, *, test_split: bool = False
) -> list[Sample]:
    """The images under DATA to evaluate `version` on, all of them or (`test_split`) those of
    its own held-out split; clear errors for SKUs it does not know or for another folder."""
    import json

    from training.dataset import scan
    from training.labels import Labels
    from training.split_record import version_part

    folder = registry.path(version)
    known = Labels.load(folder / "labels.json")
    _, samples = scan(data_dir)
    unknown = sorted({f"{s.model}/{s.sku}" for s in samples if not _knows(known, s.model, s.sku)})
    if unknown:
        shown = ", ".join(unknown[:3]) + (
            f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        )
        raise DatasetError(f"{data_dir} has SKUs that version {version} does not know: {shown}")
    if not test_split:
        return samples
    config = json.loads((folder / "config.json").read_text())
    trained_on = config.get("data_dir")
    if trained_on is None or Path(trained_on) != data_dir.resolve():
        raise DatasetError(
            f"{version} was trained on {trained_on or 'an unrecorded folder'}, not {data_dir}: "
            "its test split is only defined there"
        )
    # the split as trained (duplicate groups kept together), or the plain one for older versions
    return version_part(folder, data_dir, "test", seed=int(config["seed"]))


def _knows(labels: Any, model: str, sku: str) -> bool:
    index = labels.sku_index.get(sku)
    return index is not None and labels.models[labels.model_of_sku[index]] == model
