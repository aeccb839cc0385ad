"""`skuai train DATA --from VERSION`: the incremental path of the train command (issue 18).

The catalog comparison (by folder) runs before the data check and TensorFlow: a dataset that
drops SKUs or models of VERSION (without --allow-removals), or changes nothing, is a usage error
(exit status 2, one line), as click's own are."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from skuai.cli_base import fail
from skuai.console import console
from skuai.train_outcome import echo_json, measure_unknowns
from training.registry import Registry

USAGE_ERROR = 2  # click's exit status for a command line that cannot work


def train_incremental(
    data: Path,
    registry: Registry,
    parent: str,
    *,
    allow_removals: bool,
    activate: bool,
    force: bool,
    seed: int | None,
    as_json: bool,
    unknowns: Path | None = None,
) -> None:
    """Check DATA at VERSION's input size, refuse a shrinking or unchanged catalog, train the
    incremental version, print its metrics and phase times (or the outcome as JSON)."""
    from skuai.cli_data import print_summary, run_check
    from training.dataset import labels_of, list_dataset
    from training.lineage import compare, refusal

    folder = registry.path(parent)
    input_size = int(json.loads((folder / "config.json").read_text())["input_size"])
    # by the folders, before minutes of checking photos (train_from compares the usable ones)
    new_labels = labels_of(list_dataset(data).images)
    change = compare(registry.labels(parent), new_labels)
    reason = refusal(change, parent, allow_removals=allow_removals)
    if reason is not None:
        click.echo(f"error: {reason}", err=True)
        sys.exit(USAGE_ERROR)
    if unknowns is not None:  # refused before the training, not after it
        from training.open_world_measure import known_pairs, unknown_samples

        unknown_samples(known_pairs(new_labels), unknowns, "the new version")
    check = run_check(data, input_size=input_size, quiet=as_json)
    if not as_json:
        print_summary(check, force=force)
    errors = check.errors()
    if errors and not force:
        fail(
            f"{data} has {len(errors)} error{'s' * (len(errors) != 1)} (run `skuai data check "
            f"{data}` for the list): fix them, or pass --force to train without the unusable files"
        )
    from skuai.console import training_events
    from skuai.quiet import import_tensorflow_quietly
    from training.incremental import train_from

    import_tensorflow_quietly()
    with training_events(enabled=not as_json) as events:
        outcome = train_from(
            data,
            registry,
            parent,
            allow_removals=allow_removals,
            activate=activate,
            events=events,
            check=check,
            force=force,
            seed=seed,
        )
        measure_unknowns(outcome, unknowns, events)
    if as_json:
        echo_json(outcome)
        return
    _print_outcome(outcome.metrics)
    state = "active" if outcome.activated else "not activated"
    console.print(f"version {outcome.version} written to {outcome.path} ({state})")


def _print_outcome(metrics: dict[str, Any]) -> None:
    """What changed, the test-split metrics, and the seconds each phase took."""
    from training.evaluate import summary_rows
    from training.lineage import describe

    console.print(f"  {describe(metrics.get('lineage'))}")
    for name, value in summary_rows(metrics):
        console.print(f"  {name:<34} {value}")
    if metrics.get("open_world"):
        from training.open_world import summary_rows as open_world_rows

        for name, value in open_world_rows(metrics["open_world"]):
            console.print(f"  {name:<34} {value}")
    incremental = metrics["incremental"]
    for key, title in (
        ("new_sku_top1", "new SKUs' top-1"),
        ("known_sku_top1", "known SKUs' top-1"),
    ):
        share = incremental.get(key)
        if share is not None:
            console.print(f"  {title:<34} {share:.2%}")
    timings = metrics["timings_seconds"]
    phases = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in timings.items())
    console.print(f"  trained in {incremental['seconds']} s ({phases})")
