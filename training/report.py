"""The human-readable report of a version: report.md and the model confusion-matrix image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.evaluate import summary_rows
from training.labels import Labels


def write_report(
    folder: Path,
    *,
    version: str,
    metrics: dict[str, Any],
    labels: Labels,
    config: dict[str, Any],
    timings: dict[str, float],
    skipped: int,
) -> None:
    """Write `report.md` and `confusion.png` into the version folder."""
    if metrics.get("model_confusion"):
        write_confusion_image(folder / "confusion.png", metrics["model_confusion"], labels.models)
    lines = [
        f"# Model version {version}",
        "",
        f"{len(labels.models)} models, {len(labels.skus)} SKUs; input {config['input_size']} px, "
        f"width {config['width']}, weights `{config['weights']}`.",
        f"Unreadable images skipped: {skipped}.",
        "",
        "## Test split",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in summary_rows(metrics)),
        "",
        "## Training time",
        "",
        "| phase | seconds |",
        "|---|---|",
        *(f"| {phase} | {seconds:.1f} |" for phase, seconds in timings.items()),
        "",
    ]
    if metrics.get("model_confusion"):
        lines += ["## Stage-1 confusion matrix", "", "![confusion matrix](confusion.png)", ""]
    lines += _worst_skus(metrics)
    (folder / "report.md").write_text("\n".join(lines))


def write_confusion_image(path: Path, matrix: list[list[int]], names: tuple[str, ...]) -> None:
    """A labelled heat map of the model confusion matrix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.5 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted model")
    ax.set_ylabel("true model")
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _worst_skus(metrics: dict[str, Any], count: int = 10) -> list[str]:
    per_sku = metrics.get("end_to_end", {}).get("per_sku", {})
    scored = [(v["recall"], k) for k, v in per_sku.items() if v["recall"] is not None]
    worst = sorted(scored)[:count]
    if not worst:
        return []
    return [
        "## Lowest SKU recall",
        "",
        "| SKU | recall |",
        "|---|---|",
        *(f"| {sku} | {recall:.2%} |" for recall, sku in worst),
        "",
    ]
