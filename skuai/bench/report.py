"""The benchmark as a table for people, and as a bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from skuai.console import console
from training.precision import describe


def rows(result: dict[str, Any]) -> list[tuple[str, float]]:
    """(design, images per second) for every throughput scenario."""
    raw = result["raw"]
    return [
        *(
            (f"raw {p} (batch {raw[p]['best_batch']})", raw[p]["images_per_second"])
            for p in ("fp32", "bf16", "int8")
            if p in raw
        ),
        (
            f"end to end, batch ({result.get('precision', 'fp32')} worker)",
            result["end_to_end"]["end_to_end_images_per_second"],
        ),
        (
            f"single jobs, {result['single_heavy']['concurrency']} clients",
            result["single_heavy"]["images_per_second"],
        ),
        ("baseline: one task per image", result["baseline_task_per_image"]["images_per_second"]),
        ("baseline: sync predict endpoint", result["baseline_sync_endpoint"]["images_per_second"]),
    ]


def print_report(result: dict[str, Any]) -> None:
    """The throughput table, latencies, ratios and memory."""
    base = "fp32" if "fp32" in result["raw"] else result["precision"]  # fp32 when timed
    raw_base = result["raw"][base]["images_per_second"]
    table = Table(
        "design",
        "img/s",
        f"vs raw {base}",
        title=f"skuai bench — {result['input_size']} px, {result['images']} images",
    )
    for name, rate in rows(result):
        table.add_row(name, f"{rate:.1f}", f"{rate / raw_base:.2f}x")
    console.print(table)
    for name in ("single_light", "single_heavy"):
        lat = result[name]
        console.print(
            f"{name}: p50 {lat['p50_seconds']} s, p99 {lat['p99_seconds']} s "
            f"({lat['requests']} jobs, {lat['concurrency']} clients)"
        )
    console.print(f"ratios: {result['ratios']}")
    for precision in ("bf16", "int8"):
        check = result["raw"].get(f"{precision}_accuracy_check")
        if check:
            console.print(f"accuracy check: {describe(check)}")
    for name, mem in result["end_to_end"]["memory_mib"].items():
        console.print(
            f"{name} RSS: start {mem['start']:.0f}, end {mem['end']:.0f}, "
            f"peak {mem['peak']:.0f} MiB"
        )


def write_plot(result: dict[str, Any], path: Path) -> None:
    """A horizontal bar chart of images per second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, rates = zip(*rows(result), strict=True)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.barh(names[::-1], rates[::-1], color="#3b6ea5")
    ax.set_xlabel("images per second")
    ax.set_title(f"skuai bench, {result['input_size']} px (higher is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
