"""The open-world decision measured on photos: a cascade's answers with the evidence behind them
(score_photos), the known test photos that lose their "sku" decision (measure_known), and photos
of SKUs and models a version was not trained on (measure_unknowns: the issue's targets), with the
rows the CLI prints. No TensorFlow at import."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.decisions import DECISIONS
from shared.errors import ConfigError, DatasetError
from training.atomic_files import write_json_atomically
from training.dataset import Sample
from training.labels import Labels
from training.open_world import (
    CHUNK,
    METHODS,
    Evidence,
    OpenWorld,
    decision_codes,
    targets_met,
)

if TYPE_CHECKING:
    from training.cascade import Cascade


@dataclass(frozen=True)
class Scored:
    """Photos passed through a cascade: the evidence of its answers, and the truth when known."""

    evidence: Evidence
    models: np.ndarray  # true model index (-1: a model the version does not know)
    skus: np.ndarray  # true SKU index (-1: a SKU the version does not know)

    @property
    def correct(self) -> np.ndarray:
        """The answers whose SKU is right."""
        return np.asarray(self.evidence.sku == self.skus)


def score_photos(
    cascade: Cascade,
    samples: Sequence[Sample],
    *,
    progress: Callable[[int], None] | None = None,
) -> Scored:
    """The cascade's answers on `samples` (decoded CHUNK at a time), with their truth in the
    cascade's label space (-1 where it does not know the model or SKU)."""
    from training.dataset import labels_of
    from training.loading import load_arrays

    labels = cascade.labels
    own = labels_of(list(samples)) if samples else labels  # the samples' names, any catalog
    parts: list[Evidence] = []
    models: list[int] = []
    skus: list[int] = []
    for start in range(0, len(samples), CHUNK):
        arrays = load_arrays(samples[start : start + CHUNK], own, size=cascade.input_size)
        if progress is not None:
            progress(len(samples[start : start + CHUNK]))
        if len(arrays.images) == 0:
            continue
        _, evidence, _ = cascade.predict_with_evidence(arrays.images)
        assert evidence is not None
        parts.append(evidence)
        for m, s in zip(arrays.models, arrays.skus, strict=True):
            model, sku = own.models[m], own.skus[s]
            index = labels.sku_index.get(sku)
            known = index is not None and labels.models[labels.model_of_sku[index]] == model
            models.append(labels.model_index.get(model, -1))
            skus.append(index if known and index is not None else -1)
    if not parts:
        raise DatasetError("none of the photos could be read")
    return Scored(Evidence.joined(parts), np.array(models), np.array(skus))


def score_or_none(
    cascade: Cascade, samples: Sequence[Sample], progress: Callable[[int], None]
) -> Scored | None:
    """`score_photos`, or None when there is no photo or none could be read."""
    if not samples:
        return None
    try:
        return score_photos(cascade, samples, progress=progress)
    except DatasetError:
        return None  # nothing readable: nothing to fit or measure on


def measure_known(world: OpenWorld, test: Scored | None) -> dict[str, Any]:
    """The operating point, and on the known test photos: the share of correctly classified
    ones that lose "sku" (every method), and the decisions' counts (the version's method)."""
    summary: dict[str, Any] = {
        "method": world.method,
        "budget": world.budget,
        "split": world.split,
        "thresholds": world.thresholds[world.method],
        "known_sku_lost": None,
        "known_correct_photos": 0,
        "decisions": dict.fromkeys(DECISIONS, 0),
        "by_method": {name: {"thresholds": world.thresholds[name]} for name in METHODS},
    }
    if test is None:
        return summary
    scores = world.scores(test.evidence)
    right = test.correct
    summary["known_correct_photos"] = int(right.sum())
    for name, m in METHODS.items():
        if m.unknown not in scores or m.model not in scores:
            continue
        codes = decision_codes(scores, m, world.thresholds[name])
        lost = float(np.mean(codes[right] > 0)) if right.any() else None
        summary["by_method"][name]["known_sku_lost"] = lost
        if name == world.method:
            summary["known_sku_lost"] = lost
            counts = Counter(DECISIONS[c] for c in codes)
            summary["decisions"] = {d: int(counts.get(d, 0)) for d in DECISIONS}
    return summary


def unknown_samples(known: set[tuple[str, str]], unknown_dir: Path, version: str) -> list[Sample]:
    """The photos under `unknown_dir` (DATA/<model>/<sku>/ layout), none of whose (model, SKU)
    pairs may be in `known`: they stand for SKUs and models the version has never seen."""
    from training.dataset import scan

    _, samples = scan(unknown_dir)
    clash = sorted({f"{s.model}/{s.sku}" for s in samples if (s.model, s.sku) in known})
    if clash:
        shown = ", ".join(clash[:3]) + (f" and {len(clash) - 3} more" if len(clash) > 3 else "")
        raise DatasetError(
            f"{unknown_dir} should hold only SKUs {version} was not trained on, but has {shown}"
        )
    return samples


def known_pairs(labels: Labels) -> set[tuple[str, str]]:
    """Every (model, SKU) of a label space."""
    return {(m, s) for m in labels.models for s in labels.skus_by_model[m]}


def measure_unknowns(
    cascade: Cascade,
    unknown_dir: Path,
    *,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The decisions on photos of SKUs the version does not know: unknown colourways of known
    models should be flagged ("model" or "unknown"), photos of unknown models "unknown"."""
    world = cascade.open_world
    if world is None:
        raise ConfigError(
            f"{cascade.version} has no open-world calibration: run `skuai models calibrate "
            f"{cascade.version}` first"
        )
    samples = unknown_samples(known_pairs(cascade.labels), unknown_dir, cascade.version)
    scored = score_photos(cascade, samples, progress=progress)
    scores = world.scores(scored.evidence)
    colourway = scored.models >= 0
    method = world.method_for(scored.evidence)
    report: dict[str, Any] = {"method": method, "photos": len(scored.models)}
    report["unknown_colourways"] = int(colourway.sum())
    report["unknown_model_photos"] = int((~colourway).sum())
    report["by_method"] = {}
    for name, m in METHODS.items():
        if m.unknown not in scores or m.model not in scores:
            continue
        codes = decision_codes(scores, m, world.thresholds[name])
        rates = _unknown_rates(codes, colourway, scored)
        report["by_method"][name] = rates
        if name == method:
            report.update(rates)
    return report


def _unknown_rates(codes: np.ndarray, colourway: np.ndarray, scored: Scored) -> dict[str, Any]:
    flagged = codes[colourway] > 0
    named = (codes[colourway] == 1) & (scored.evidence.model[colourway] == scored.models[colourway])
    return {
        "unknown_colourways_flagged": float(flagged.mean()) if colourway.any() else None,
        "unknown_colourways_flagged_count": int(flagged.sum()),
        # a "model" answer that names the photo's true model
        "unknown_colourways_model_right": float(named.mean()) if colourway.any() else None,
        "unknown_models_unknown": float(np.mean(codes[~colourway] == 2))
        if (~colourway).any()
        else None,
        "unknown_models_unknown_count": int(np.sum(codes[~colourway] == 2)),
    }


def record_unknowns(
    folder: Path,
    unknown_dir: Path,
    *,
    precision: str = "fp32",
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """`measure_unknowns` of the calibrated version in `folder`, kept in its metrics.json as
    open_world.unknowns (with the directory measured); returns the updated "open_world"."""
    from training.cascade import Cascade

    cascade = Cascade.load(folder, version=folder.name, precision=precision)
    report = measure_unknowns(cascade, unknown_dir, progress=progress)
    report["unknowns_dir"] = str(unknown_dir.resolve())
    metrics_file = folder / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    summary = {**metrics.get("open_world", {}), "unknowns": report}
    summary["targets_met"] = targets_met(summary)
    metrics["open_world"] = summary
    write_json_atomically(metrics_file, metrics)  # the API may be reading it
    return dict(summary)
