"""`skuai models`: the registry's versions, listed, activated, evaluated and calibrated (the
export, shadow and compare subcommands live in their own modules and join this group in cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from skuai.cli_base import fail, settings
from skuai.console import console
from skuai.train_outcome import print_open_world
from training.open_world import DEFAULT_BUDGET, DEFAULT_METHOD, DEFAULT_SPLIT
from training.open_world import METHODS as OPEN_WORLD_METHODS


@click.group()
def models() -> None:
    """The model registry."""


@models.command("list")
@click.option("--registry", type=click.Path(path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True)
def models_list(registry: Path | None, as_json: bool) -> None:
    """List versions with their test metrics and lineage (`full`, or the parent and the
    SKUs and models added and removed); * marks the active one."""
    from training.lineage import describe
    from training.registry import Registry

    versions = Registry(registry or settings().registry_dir).versions()
    rows = [
        {
            "version": v.name,
            "active": v.active,
            "sku_top1": v.metrics.get("end_to_end", {}).get("sku_top1"),
            "model_top1": v.metrics.get("end_to_end", {}).get("model_top1"),
            "input_size": v.config.get("input_size"),
            "lineage": v.lineage,
        }
        for v in versions
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        console.print("no model versions yet: run `skuai train DATA`")
    for row in rows:
        mark = "*" if row["active"] else " "
        sku = f"{row['sku_top1']:.2%}" if row["sku_top1"] is not None else "-"
        click.echo(
            f"{mark} {row['version']:<6} input {row['input_size']}px  SKU top-1 {sku}  "
            + describe(row["lineage"])
        )
    from skuai.cli_shadow import status_lines

    for line in status_lines():
        click.echo(line)


@models.command("activate")
@click.argument("version")
@click.option("--registry", type=click.Path(path_type=Path), default=None)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "int8"]),
    default="fp32",
    show_default=True,
    help="bf16 or int8: check that precision's accuracy on the test split (int8: quantize "
    "first) before activating.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Activate even if it was right less often than the active one on corrected jobs.",
)
def models_activate(version: str, registry: Path | None, precision: str, force: bool) -> None:
    """Make VERSION the active model (workers switch between chunks); refused when it was right
    less often than the active one on corrected jobs both answered in the shadow."""
    from skuai.cli_shadow import check_activation
    from training.registry import Registry

    reg = Registry(registry or settings().registry_dir)
    reg.path(version)
    check_activation(reg.active(), version, force)
    if precision != "fp32":
        from skuai.quiet import import_tensorflow_quietly
        from training.precision import check_precision, describe

        import_tensorflow_quietly()
        with console.status(f"checking {version}'s accuracy in {precision}..."):
            verdict = check_precision(reg, version, precision)
        click.echo(describe(verdict))
        if not verdict["allowed"]:
            fail(
                f"{precision} loses too much accuracy; {version} was not activated "
                "(activate it in fp32, without --precision)"
            )
    reg.activate(version)
    click.echo(f"{version} is now active")


@models.command("evaluate")
@click.argument("version")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--registry", type=click.Path(path_type=Path), default=None)
@click.option(
    "--test-split",
    is_flag=True,
    help="Only VERSION's own held-out test split of DATA (the folder it was trained on).",
)
@click.option(
    "--corruptions",
    is_flag=True,
    help="Also under a fixed suite of photo degradations (JPEG, rotation, lighting, crops, "
    "blur, colour casts, mixed), with the ratio to clean accuracy.",
)
@click.option("--corruption-seed", default=0, show_default=True, help="Seed of that suite.")
@click.option(
    "--unknowns",
    type=click.Path(path_type=Path),
    default=None,
    help="Photos (DIR/<model>/<sku>/) of SKUs and models VERSION does not know: measure its "
    "open-world decision on them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def models_evaluate(
    version: str,
    data: Path,
    registry: Path | None,
    test_split: bool,
    corruptions: bool,
    corruption_seed: int,
    unknowns: Path | None,
    as_json: bool,
) -> None:
    """Evaluate VERSION on every image under DATA (e.g. photos it was never trained on)."""
    from skuai.console import make_progress
    from skuai.quiet import import_tensorflow_quietly
    from training.corruptions import CORRUPTIONS
    from training.evaluate import summary_rows
    from training.external import evaluate_folder, folder_samples
    from training.registry import Registry

    reg = Registry(registry or settings().registry_dir)
    reg.path(version)
    # a bad dataset is reported before TensorFlow loads
    samples = folder_samples(reg, version, data, test_split=test_split)
    if unknowns is not None:
        from training.open_world_measure import known_pairs, unknown_samples

        unknown_samples(known_pairs(reg.labels(version)), unknowns, version)
    import_tensorflow_quietly()
    passes = 1 + len(CORRUPTIONS) if corruptions else 1
    with make_progress(transient=True, disable=as_json) as progress:
        task = progress.add_task(f"evaluating {version}", total=passes * len(samples))
        metrics = evaluate_folder(
            reg,
            version,
            data,
            test_split=test_split,
            corruption_seed=corruption_seed if corruptions else None,
            progress=lambda n: progress.advance(task, n),
        )
        if unknowns is not None:
            from training.cascade import Cascade
            from training.open_world_measure import measure_unknowns

            cascade = Cascade.load(reg.path(version), version=version)
            measured = measure_unknowns(cascade, unknowns)
            metrics.setdefault("open_world", {})["unknowns"] = measured
    if as_json:
        click.echo(json.dumps(metrics))
        return
    for name, value in summary_rows(metrics):
        console.print(f"  {name:<34} {value}")
    console.print(f"  {'unreadable images skipped':<34} {metrics['skipped_images']}")
    print_open_world(metrics.get("open_world"))
    if corruptions:
        _print_robustness(metrics["corruptions"])


@models.command("calibrate")
@click.argument("version")
@click.option("--registry", type=click.Path(path_type=Path), default=None)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="The dataset VERSION was trained on [default: the folder its config.json names].",
)
@click.option(
    "--budget",
    default=DEFAULT_BUDGET,
    show_default=True,
    type=float,
    help="Share of correctly classified validation photos allowed to lose their sku decision.",
)
@click.option(
    "--split",
    default=DEFAULT_SPLIT,
    show_default=True,
    type=float,
    help="Share of the budget the unknown (stage 1) threshold spends; the model one the rest.",
)
@click.option(
    "--method",
    default=DEFAULT_METHOD,
    show_default=True,
    type=click.Choice(list(OPEN_WORLD_METHODS)),
    help="The scores behind the decision (docs/training.md, 'Open world').",
)
@click.option(
    "--unknowns",
    type=click.Path(path_type=Path),
    default=None,
    help="Photos (DIR/<model>/<sku>/) of SKUs and models VERSION does not know: measure the "
    "decision on them too.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the open-world summary as JSON.")
def models_calibrate(
    version: str,
    registry: Path | None,
    data: Path | None,
    budget: float,
    split: float,
    method: str,
    unknowns: Path | None,
    as_json: bool,
) -> None:
    """Fit VERSION's open-world decision (sku, model or unknown) on its validation photos; a
    calibration it had is replaced. Its metrics.json keeps the result."""
    from skuai.console import training_events
    from skuai.quiet import import_tensorflow_quietly
    from training.open_world import calibrate, check_budget
    from training.open_world_measure import known_pairs, record_unknowns, unknown_samples
    from training.registry import Registry

    reg = Registry(registry or settings().registry_dir)
    folder = reg.path(version)
    check_budget(budget, split)
    if unknowns is not None:
        unknown_samples(known_pairs(reg.labels(version)), unknowns, version)
    import_tensorflow_quietly()
    with training_events(enabled=not as_json) as events:
        summary = calibrate(folder, data, budget=budget, method=method, split=split, events=events)
        calibrated = summary.get("calibrated", True)  # False: no validation photo was read
        if unknowns is not None and calibrated:
            progress = events.phase("measuring the decision on the unknowns") if events else None
            summary = record_unknowns(folder, unknowns, progress=progress)
    if as_json:
        click.echo(json.dumps(summary))
        return
    print_open_world(summary)
    if calibrated:
        console.print(f"open-world decision of {version} written to {folder}")


def _print_robustness(result: dict[str, object]) -> None:
    from rich.table import Table

    from training.robustness import robustness_rows

    table = Table(
        title=f"end to end under corruptions (suite seed {result['seed']})",
        caption="ratio: to clean accuracy; overall: the mean over the corruptions",
    )
    for column in ("corruption", "model top-1", "ratio", "SKU top-1", "ratio"):
        table.add_column(
            column, justify="left" if column == "corruption" else "right", no_wrap=True
        )
    for row in robustness_rows(result):
        table.add_row(*row)
    console.print(table)
