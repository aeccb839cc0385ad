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
        *_precision_line(metrics),
        "| phase | seconds | epochs | training images/s |",
        "|---|---|---|---|",
        *(_timing_row(phase, seconds, metrics) for phase, seconds in timings.items()),
        "",
    ]
    if metrics.get("training", {}).get("peak_rss_mib"):
        lines += [
            f"Peak memory (RSS) of the training process: "
            f"{metrics['training']['peak_rss_mib']:.0f} MiB.",
            "",
        ]
    lines += _comparison(metrics)
    if metrics.get("model_confusion"):
        lines += ["## Stage-1 confusion matrix", "", "![confusion matrix](confusion.png)", ""]
    lines += _worst_skus(metrics)
    (folder / "report.md").write_text("\n".join(lines))


def _precision_line(metrics: dict[str, Any]) -> list[str]:
    precision = metrics.get("training", {}).get("precision")
    if not precision:
        return []
    compute = "float32" if precision == "fp32" else f"mixed precision ({precision} compute)"
    return [f"Trained in {compute}; evaluated and saved in float32.", ""]


def _timing_row(phase: str, seconds: float, metrics: dict[str, Any]) -> str:
    stage = metrics.get("training", {}).get(phase)
    if not stage:
        return f"| {phase} | {seconds:.1f} | | |"
    return f"| {phase} | {seconds:.1f} | {stage['epochs']} | {stage['images_per_second']:.1f} |"


def _comparison(metrics: dict[str, Any]) -> list[str]:
    """Cascade against the flat single-stage classifier, side by side, and where each errs."""
    flat, cascade = metrics.get("flat"), metrics.get("end_to_end")
    if not flat or not flat.get("test_images") or not cascade:
        return []

    def row(name: str, a: str, b: str) -> str:
        return f"| {name} | {a} | {b} |"

    rows = [
        row("SKU top-1", f"{cascade['sku_top1']:.2%}", f"{flat['sku_top1']:.2%}"),
        *(
            [row("SKU balanced accuracy", f"{balanced:.2%}", f"{flat_balanced:.2%}")]
            if (balanced := cascade.get("sku_balanced_accuracy")) is not None
            and (flat_balanced := flat.get("sku_balanced_accuracy")) is not None
            else []
        ),
        row("SKU top-5", f"{cascade['sku_top5']:.2%}", f"{flat['sku_top5']:.2%}"),
        row("model top-1", f"{cascade['model_top1']:.2%}", f"{flat['model_top1']:.2%}"),
        row(
            "errors: wrong model",
            str(cascade["errors"]["wrong_model"]),
            str(flat["errors"]["wrong_model"]),
        ),
        row(
            "errors: right model, wrong SKU",
            str(cascade["errors"]["wrong_sku_right_model"]),
            str(flat["errors"]["wrong_sku_right_model"]),
        ),
        row(
            "expected calibration error",
            f"{cascade['expected_calibration_error']:.4f}",
            f"{flat['expected_calibration_error']:.4f}",
        ),
        row(
            "parameters",
            f"{metrics.get('parameters', 0):,}",
            f"{flat['parameters']:,}",
        ),
        row(
            "test-split predictions/s (this machine)",
            f"{cascade['predict_images_per_second']:.1f}",
            f"{flat['predict_images_per_second']:.1f}",
        ),
    ]
    by_model = [
        row(model, f"{accuracy:.2%}", f"{flat['sku_top1_by_model'].get(model, 0.0):.2%}")
        for model, accuracy in cascade["sku_top1_by_model"].items()
    ]
    gap = (cascade["sku_top1"] - flat["sku_top1"]) * 100
    speed = flat["predict_images_per_second"] / max(cascade["predict_images_per_second"], 1e-9)
    verdict = (
        f"SKU top-1: the cascade is {abs(gap):.2f} points "
        f"{'ahead of' if gap >= 0 else 'behind'} the flat classifier (width "
        f"{flat['width']:.3g}), which predicts {speed:.2f}x as fast on this machine."
    )
    return [
        "## Cascade against a flat single-stage classifier",
        "",
        verdict,
        "",
        "| test split | cascade | flat |",
        "|---|---|---|",
        *rows,
        "",
        "SKU top-1 by true model:",
        "",
        "| model | cascade | flat |",
        "|---|---|---|",
        *by_model,
        "",
    ]


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
