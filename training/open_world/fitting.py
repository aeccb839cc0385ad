"""`calibrate`: fit a version's open-world decision on its validation photos, write it, measure
it on the test photos and record the summary in metrics.json. The only part that orchestrates
(loads the cascade, reads the split); TensorFlow is imported when it runs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from shared.errors import ConfigError, DatasetError
from training.atomic_files import write_json_atomically
from training.open_world.bank import CENTROID_PHOTOS, centroid_samples, fit_bank
from training.open_world.calibration import CALIBRATION_FILE, OpenWorld
from training.open_world.methods import (
    DEFAULT_BUDGET,
    DEFAULT_METHOD,
    DEFAULT_SPLIT,
    METHODS,
    check_budget,
    check_method,
)
from training.open_world.scores import raw_scores, with_combination, z_stats
from training.open_world.thresholds import fit_thresholds, photos_needed

# The thresholds are fitted on the float model's embeddings; int8 applies them as they are.
FITTED_ON = "fp32"


def calibrate(
    folder: Path,
    data_dir: Path | None = None,
    *,
    budget: float = DEFAULT_BUDGET,
    method: str = DEFAULT_METHOD,
    split: float = DEFAULT_SPLIT,
    events: Any = None,
) -> dict[str, Any]:
    """Fit the open-world decision of the version in `folder` on its validation photos (its
    split.json, under `data_dir` or the dataset its config.json names), write open_world.json
    and open_world.npz, measure it on the test photos, and return that summary (metrics.json's
    "open_world"; updated there too when the version already has a metrics.json).

    Without a readable validation photo nothing is written: the summary says the version is
    not calibrated (it answers "sku"); a version that has a calibration keeps it, and that is
    a DatasetError (`skuai models calibrate` pointed at the wrong photos)."""
    from training.cascade import Cascade
    from training.open_world_measure import measure_known, score_or_none
    from training.split_record import version_part
    from training.train import QuietEvents

    check_method(method)
    check_budget(budget, split)
    events = events or QuietEvents()
    began = time.perf_counter()
    config = json.loads((folder / "config.json").read_text())
    recorded = config.get("data_dir")
    data_dir = data_dir or (Path(recorded) if recorded else None)
    if data_dir is None or not data_dir.is_dir():
        raise ConfigError(
            f"the dataset of {folder.name} ({data_dir or 'unknown'}) is not here: calibrating "
            "the open-world decision needs its validation photos (pass the dataset folder)"
        )
    seed = int(config.get("seed", 0))
    parts = {p: version_part(folder, data_dir, p, seed=seed) for p in ("train", "val", "test")}
    cascade = Cascade.load(folder, version=folder.name, open_world=False)
    train = centroid_samples(parts["train"], CENTROID_PHOTOS)
    total = len(train) + len(parts["val"]) + len(parts["test"])
    progress = events.phase("calibrating the open-world decision", total)
    val = score_or_none(cascade, parts["val"], progress)
    if val is None:
        return _not_calibrated(folder, data_dir, budget, method, split)
    bank = fit_bank(cascade, folder, train, progress)
    test = score_or_none(cascade, parts["test"], progress)
    raw = raw_scores(val.evidence, bank)
    stats = z_stats(raw)
    scores = with_combination(raw, stats)
    right = val.correct
    thresholds = {
        name: fit_thresholds(scores[m.unknown][right], scores[m.model][right], budget, split)
        for name, m in METHODS.items()
    }
    info = {
        "validation_photos": len(val.skus),
        "validation_correct": int(right.sum()),
        "photos_needed": {
            "unknown": photos_needed(budget, split),
            "model": photos_needed(budget, 1 - split),
        },
        "embeddings": FITTED_ON,
        "centroid_photos": len(train),
        "bank_photos": len(bank.neighbours),
        "data_dir": str(data_dir.resolve()),
    }
    world = OpenWorld(method, budget, split, thresholds, stats, bank, info)
    summary = {"calibrated": True, **measure_known(world, test)}
    info["seconds"] = round(time.perf_counter() - began, 1)
    world.save(folder)
    summary["calibration"] = info
    _record(folder, summary)
    return summary


def _not_calibrated(
    folder: Path, data_dir: Path, budget: float, method: str, split: float
) -> dict[str, Any]:
    """The summary of a version left without calibration, as no validation photo was read."""
    if (folder / CALIBRATION_FILE).is_file():
        raise DatasetError(
            f"none of {folder.name}'s validation photos could be read under {data_dir}: nothing "
            "calibrated, its calibration is kept"
        )
    summary = {
        "calibrated": False,
        "reason": f'no readable validation photo under {data_dir}: every answer is "sku"',
        "method": method,
        "budget": budget,
        "split": split,
    }
    _record(folder, summary)
    return summary


def _record(folder: Path, summary: dict[str, Any]) -> None:
    """The summary as metrics.json's "open_world", when the version has a metrics.json (a
    version being trained writes it afterwards)."""
    metrics_file = folder / "metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        metrics["open_world"] = summary
        write_json_atomically(metrics_file, metrics)
