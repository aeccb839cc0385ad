"""The accuracy check that lets a version run in reduced precision (int8 or bf16): evaluate float32
and the reduced precision side by side on the version's test split, allow it only if SKU top-1
drops by at most MAX_DROP_POINTS. int8 is quantized first, calibrated with training images. The
verdicts are kept in the version folder (`precision.json`, one entry per precision)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from shared.errors import ConfigError, InvalidArgument
from training.labels import Labels
from training.registry import Registry
from training.split_record import version_part

MAX_DROP_POINTS = 0.5
CALIBRATION_IMAGES = 64
VERDICT_FILE = "precision.json"
REDUCED_PRECISIONS = ("bf16", "int8")


def precision_allowed(folder: Path, precision: str) -> bool:
    """True when this version passed the accuracy check for `precision` (bf16 or int8)."""
    return bool(_verdicts(folder).get(precision, {}).get("allowed"))


def check_precision(registry: Registry, version: str, precision: str) -> dict[str, Any]:
    """Compare `precision` with float32 on the version's test split; record and return the
    verdict."""
    from training.cascade import Cascade
    from training.evaluate import evaluate
    from training.loading import load_arrays
    from training.quantize import quantize_version

    if precision not in REDUCED_PRECISIONS:
        raise InvalidArgument(f"precision must be one of {', '.join(REDUCED_PRECISIONS)}")
    folder = registry.path(version)
    config = json.loads((folder / "config.json").read_text())
    data_dir = Path(config["data_dir"]) if config.get("data_dir") else None
    if data_dir is None or not data_dir.is_dir():
        raise ConfigError(
            f"the dataset of {version} ({data_dir or 'unknown'}) is not here: the {precision} "
            "accuracy check needs its test split"
        )
    labels = Labels.load(folder / "labels.json")
    seed = int(config["seed"])
    size = int(config["input_size"])
    # the version's own split (duplicate groups kept together), not a fresh one of the folder
    test = load_arrays(version_part(folder, data_dir, "test", seed=seed), labels, size=size)
    if len(test.skus) == 0:
        raise ConfigError(
            f"the test split of {version} holds no readable images: the {precision} accuracy "
            "check has nothing to measure"
        )
    began = time.perf_counter()
    if precision == "int8":
        train = version_part(folder, data_dir, "train", seed=seed)
        calibration = load_arrays(
            train[:: max(1, len(train) // CALIBRATION_IMAGES)], labels, size=size
        )
        quantize_version(
            folder,
            calibration.images[:CALIBRATION_IMAGES],
            calibration.models[:CALIBRATION_IMAGES],
        )
    prepare_seconds = time.perf_counter() - began
    fp32 = evaluate(Cascade.load(folder, version=version), test)
    reduced = evaluate(Cascade.load(folder, version=version, precision=precision), test)
    verdict = _verdict(fp32, reduced, prepare_seconds, precision)
    verdicts = {**_verdicts(folder), precision: verdict}
    (folder / VERDICT_FILE).write_text(json.dumps(verdicts, indent=2) + "\n")
    return verdict


def allow_for_timing(folder: Path, precision: str) -> None:
    """Let a random-weights benchmark version run in `precision`: it has no accuracy to lose.
    For `skuai bench` only; the verdict says so."""
    verdict = {"precision": precision, "allowed": True, "note": "random weights: timing only"}
    verdicts = {**_verdicts(folder), precision: verdict}
    (folder / VERDICT_FILE).write_text(json.dumps(verdicts, indent=2) + "\n")


def _verdicts(folder: Path) -> dict[str, Any]:
    try:
        verdicts = json.loads((folder / VERDICT_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return verdicts if isinstance(verdicts, dict) else {}


def _verdict(
    fp32: dict[str, Any], reduced: dict[str, Any], seconds: float, precision: str
) -> dict[str, Any]:
    top1 = {"fp32": fp32["end_to_end"]["sku_top1"], precision: reduced["end_to_end"]["sku_top1"]}
    drop = (top1["fp32"] - top1[precision]) * 100
    return {
        "precision": precision,
        "allowed": bool(drop <= MAX_DROP_POINTS),
        "sku_top1_fp32": top1["fp32"],
        "sku_top1_reduced": top1[precision],
        "drop_points": round(float(drop), 3),
        "max_drop_points": MAX_DROP_POINTS,
        "test_images": int(fp32["test_images"]),
        "prepare_seconds": round(seconds, 1),
    }


def describe(verdict: dict[str, Any]) -> str:
    """One line for people."""
    return (
        f"{verdict['precision']} SKU top-1 {verdict['sku_top1_reduced']:.2%} vs fp32 "
        f"{verdict['sku_top1_fp32']:.2%} ({verdict['drop_points']:+.2f} points lost, at most "
        f"{MAX_DROP_POINTS} allowed) on {verdict['test_images']} test images"
    )
