"""A cascade's accuracy under the corruption suite (training.corruptions), next to its clean
accuracy: `skuai models evaluate VERSION DATA --corruptions`.

Every photo is decoded at (up to) `MAX_SOURCE_SIDE` pixels, degraded there as a phone or a
website would degrade it, re-encoded losslessly and decoded again by the serving decoder, so the
cascade sees the corrupted photo exactly as a worker would."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

from shared.errors import InvalidImage, UnsupportedMediaType
from shared.images import decode
from training.cascade import Cascade
from training.corruptions import CORRUPTIONS, corrupt
from training.dataset import Sample
from training.evaluate import evaluate
from training.labels import Labels
from training.loading import MAX_TRAINING_PIXELS, ArraySet

MAX_SOURCE_SIDE = 512  # larger photos are degraded at this size: cheaper, and alike once shrunk
MEASURES = ("model_top1", "sku_top1")


def evaluate_corruptions(
    cascade: Cascade,
    samples: Sequence[Sample],
    labels: Labels,
    *,
    clean_metrics: dict[str, Any],
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """End-to-end model and SKU top-1, clean (`clean_metrics`, from `evaluate` on the same
    samples) and under each corruption, with their ratios to clean; `overall` is the mean over
    the corruptions (each one sees every photo once)."""
    size = cascade.input_size
    clean = _headline(clean_metrics)
    by_name = {}
    for name in CORRUPTIONS:
        arrays = corrupted_arrays(samples, labels, name, size=size, seed=seed, progress=progress)
        by_name[name] = _with_ratios(_headline(evaluate(cascade, arrays)), clean)
    overall = {m: float(np.mean([r[m] for r in by_name.values()])) for m in MEASURES}
    return {
        "seed": seed,
        "images": int(clean_metrics.get("test_images", 0)),
        "clean": clean,
        "corruptions": by_name,
        "overall": _with_ratios(overall, clean),
    }


def corrupted_arrays(
    samples: Sequence[Sample],
    labels: Labels,
    name: str,
    *,
    size: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> ArraySet:
    """Every sample degraded by corruption `name` and decoded as serving decodes; unreadable
    files are skipped, as in `load_arrays`."""

    def one(index: int) -> np.ndarray | None:
        try:
            return degrade_file(samples[index].path.read_bytes(), name, seed, index, size)
        except (InvalidImage, UnsupportedMediaType, OSError):
            return None
        finally:
            if progress is not None:
                progress(1)

    with ThreadPoolExecutor(max_workers=4) as pool:
        decoded = list(pool.map(one, range(len(samples))))
    kept = [i for i, a in enumerate(decoded) if a is not None]
    return ArraySet(
        images=np.stack([decoded[i] for i in kept])  # type: ignore[misc]
        if kept
        else np.zeros((0, size, size, 3), np.uint8),
        models=np.array([labels.model_index[samples[i].model] for i in kept], dtype=np.int32),
        skus=np.array([labels.sku_index[samples[i].sku] for i in kept], dtype=np.int32),
        skipped=tuple(str(samples[i].path) for i, a in enumerate(decoded) if a is None),
    )


def degrade_file(data: bytes, name: str, seed: int, index: int, size: int) -> np.ndarray:
    """Photo file `data` degraded by `name` near its own resolution, as the serving decoder
    then sees it at `size` pixels."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            side = max(probe.size)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"the image cannot be read: {exc}") from None
    source = decode(
        data, size=max(size, min(side, MAX_SOURCE_SIDE)), max_pixels=MAX_TRAINING_PIXELS
    )
    degraded = corrupt(Image.fromarray(source), name, seed=seed, index=index)
    buffer = io.BytesIO()
    degraded.save(buffer, "PNG", compress_level=1)  # lossless: JPEG artefacts only where drawn
    return decode(buffer.getvalue(), size=size, max_pixels=MAX_TRAINING_PIXELS)


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    if not metrics.get("test_images"):
        return {m: 0.0 for m in MEASURES}
    return {m: float(metrics["end_to_end"][m]) for m in MEASURES}


def _with_ratios(scores: dict[str, float], clean: dict[str, float]) -> dict[str, float | None]:
    # no ratio to a clean accuracy of 0: it would say nothing
    ratios = {f"{m}_ratio": scores[m] / clean[m] if clean[m] else None for m in MEASURES}
    return {**scores, **ratios}


def robustness_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(corruption, model top-1, ratio, SKU top-1, ratio) rows for the CLI's table; "overall" is
    the mean over the corruptions."""

    def ratio(r: dict[str, Any], measure: str) -> str:
        if f"{measure}_ratio" not in r:
            return "1"  # the clean row
        value = r[f"{measure}_ratio"]
        return "-" if value is None else f"{value:.3f}"

    def row(name: str, r: dict[str, Any]) -> tuple[str, str, str, str, str]:
        return (
            name,
            f"{r['model_top1']:.2%}",
            ratio(r, "model_top1"),
            f"{r['sku_top1']:.2%}",
            ratio(r, "sku_top1"),
        )

    return [
        row("clean", result["clean"]),
        *(row(name, r) for name, r in result["corruptions"].items()),
        row("overall", result["overall"]),
    ]
