"""What `skuai train` does with a new version once it is written, full or incremental: measure
the open-world decision on `--unknowns`, and print the outcome as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from skuai.console import console

if TYPE_CHECKING:
    from training.train import TrainOutcome


def measure_unknowns(outcome: TrainOutcome, unknowns: Path | None, events: Any) -> None:
    """Record the decision on `unknowns` in the version's metrics (not for an uncalibrated
    version: its rows say why)."""
    calibrated = outcome.metrics.get("open_world", {}).get("calibrated", True)
    if unknowns is None or not calibrated:
        return
    from training.open_world_measure import record_unknowns

    outcome.metrics["open_world"] = record_unknowns(
        outcome.path,
        unknowns,
        progress=events.phase("measuring the open-world decision on the unknowns")
        if events
        else None,
    )


def echo_json(outcome: TrainOutcome) -> None:
    """The version, where it is, whether it is active, and its metrics, as one JSON line."""
    document = {
        "version": outcome.version,
        "path": str(outcome.path),
        "activated": outcome.activated,
        "metrics": outcome.metrics,
    }
    click.echo(json.dumps(document))


def print_open_world(summary: dict[str, object] | None) -> None:
    """The open-world numbers with their targets (issue 18), when the version has them."""
    from training.open_world import summary_rows as open_world_rows

    if summary:
        for name, value in open_world_rows(summary):
            console.print(f"  {name:<34} {value}")
