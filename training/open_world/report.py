"""The issue's targets and the rows the CLI prints for a version's open-world summary
(metrics.json "open_world")."""

from __future__ import annotations

from typing import Any

# The targets: at most 5% of correct known photos lose "sku"; at least 90% of unknown
# colourways are flagged ("model" or "unknown"); at least 95% of unknown models are "unknown".
TARGETS = {
    "known_sku_lost": ("<=", 0.05),
    "unknown_colourways_flagged": (">=", 0.90),
    "unknown_models_unknown": (">=", 0.95),
}


def targets_met(summary: dict[str, Any]) -> dict[str, bool | None]:
    """Each target of the issue: met, missed, or None where it was not measured."""
    met: dict[str, bool | None] = {}
    for key, (sense, bound) in TARGETS.items():
        value = summary.get(key, summary.get("unknowns", {}).get(key))
        met[key] = None if value is None else (value <= bound if sense == "<=" else value >= bound)
    return met


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The open-world numbers with their targets, as (name, value) rows for the CLI; one row
    saying why for a version that was not calibrated."""
    if summary.get("calibrated") is False:
        return [("open-world decision", f"not calibrated: {summary.get('reason')}")]
    unknowns = summary.get("unknowns", {})
    met = targets_met(summary)

    def row(name: str, key: str, value: Any, count: str) -> tuple[str, str]:
        sense, bound = TARGETS[key]
        verdict = {True: "met", False: "missed", None: "not measured"}[met[key]]
        shown = "-" if value is None else f"{value:.2%}"
        return name, f"{shown}{count} (target {sense} {bound:.0%}: {verdict})"

    lost = summary.get("known_sku_lost")
    correct = summary.get("known_correct_photos", 0)
    colourways = unknowns.get("unknown_colourways_flagged")
    models = unknowns.get("unknown_models_unknown")
    thresholds = summary.get("thresholds", {})
    return [
        (
            "open-world method, budget",
            f"{summary.get('method')}, {summary.get('budget', 0):.0%} "
            f"(unknown < {_shown(thresholds.get('unknown'))}, "
            f"model < {_shown(thresholds.get('model'))})",
        ),
        *_fit_rows(summary.get("calibration")),
        row("known photos losing sku (test)", "known_sku_lost", lost, f" of {correct}"),
        row(
            "unknown colourways flagged",
            "unknown_colourways_flagged",
            colourways,
            f" of {unknowns.get('unknown_colourways', 0)}" if unknowns else "",
        ),
        row(
            "unknown models -> unknown",
            "unknown_models_unknown",
            models,
            f" of {unknowns.get('unknown_model_photos', 0)}" if unknowns else "",
        ),
    ]


def _fit_rows(info: dict[str, Any] | None) -> list[tuple[str, str]]:
    """What the thresholds were fitted on, and why a threshold never flags where too few
    correct validation photos were there to spend the budget on."""
    if not info:
        return []  # a summary written before these were recorded
    correct, needed = info.get("validation_correct", 0), info.get("photos_needed", {})
    rows = [
        (
            "open-world fitted on",
            f"{correct} correct validation photos, {info.get('embeddings', 'fp32')} embeddings "
            "(int8 applies the same thresholds)",
        )
    ]
    short = [
        f"{stage} needs >= {n}" for stage, n in needed.items() if n is not None and correct < n
    ]
    if short:
        rows.append(("thresholds that never flag", f"{', '.join(short)} correct photos"))
    return rows


def _shown(value: float | None) -> str:
    return "never" if value is None else f"{value:.4g}"
