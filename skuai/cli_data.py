"""`skuai data check`: the dataset report that `skuai train` also runs first. No TensorFlow here,
so the check starts in a second or two."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from skuai.cli_base import fail
from skuai.console import console, make_progress

if TYPE_CHECKING:
    from training.data_check import DataReport

LISTED = 20  # lines of each list shown before "... and N more"
out = Console(soft_wrap=True)  # the report is the command's output: stdout


@click.group()
def data() -> None:
    """Datasets in the layout DATA/<model>/<sku>/*."""


@data.command("check")
@click.argument("data_dir", metavar="DATA", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option(
    "--min-per-sku",
    default=50,
    show_default=True,
    type=click.IntRange(0),
    help="Images per SKU below which a SKU is reported as small.",
)
@click.option(
    "--input-size",
    default=224,
    show_default=True,
    type=click.IntRange(1),
    help="The model's input side: smaller images are reported.",
)
def data_check(data_dir: Path, as_json: bool, min_per_sku: int, input_size: int) -> None:
    """Counts, duplicates and near-duplicates, unreadable files, small SKUs, clashing names.
    Exits 1 when there are errors."""
    report = run_check(data_dir, input_size=input_size, min_per_sku=min_per_sku, quiet=as_json)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        print_report(report)
    errors = report.errors()
    if errors:
        fail(
            f"{len(errors)} error{'s' * (len(errors) != 1)} in {data_dir}: fix them, or train "
            "with --force to leave the unusable files out"
        )


def run_check(
    data_dir: Path, *, input_size: int, min_per_sku: int = 50, quiet: bool = False
) -> DataReport:
    """The check with a progress bar (erased at the end; none when `quiet`)."""
    from training.data_check import check_dataset, files_to_check

    total = files_to_check(data_dir)
    with make_progress(transient=True, disable=quiet) as progress:
        task = progress.add_task("checking the dataset", total=total)
        return check_dataset(
            data_dir,
            input_size=input_size,
            min_per_sku=min_per_sku,
            progress=lambda n: progress.advance(task, n),
        )


def print_report(report: DataReport) -> None:
    """The report for people: a table per model, then the errors and warnings."""
    table = Table("model", "SKUs", "images", "per SKU (min-max)", f"SKUs < {report.min_per_sku}")
    for model, skus in report.counts().items():
        sizes = list(skus.values()) or [0]
        small = sum(n < report.min_per_sku for n in skus.values())
        table.add_row(
            model,
            str(len(skus)),
            str(sum(sizes)),
            f"{min(sizes)}-{max(sizes)}",
            f"[yellow]{small}[/]" if small else "0",
        )
    out.print(table)
    _print_list("errors", report.errors(), "red")
    _print_list("warnings", report.warnings(), "yellow")
    out.print(_summary_line(report))


def print_summary(report: DataReport, *, force: bool = False) -> None:
    """A few lines for `skuai train`: the totals and the first errors and warnings; with
    `force`, every file that training leaves out."""
    console.print(_summary_line(report))
    errors = report.errors()
    unusable = [f for f in report.files if not f.usable]
    if force and unusable:
        console.print(f"--force: training without these {len(unusable)} files:")
        for facts in unusable[:LISTED]:
            console.print(f"  {facts.path}: {facts.reason}", markup=False, highlight=False)
        if len(unusable) > LISTED:
            console.print(f"  ... and {len(unusable) - LISTED} more (the version's split.json)")
        errors = errors[len(unusable) :]  # the files come first among the errors
    for kind, lines, colour in (
        ("error", errors, "red"),
        ("warning", report.warnings(), "yellow"),
    ):
        for line in lines[:3]:
            console.print(f"  [{colour}]{kind}[/] {line}", markup=True, highlight=False)
        if len(lines) > 3:
            console.print(f"  ... and {len(lines) - 3} more {kind}s (see `skuai data check`)")


def _summary_line(report: DataReport) -> str:
    totals = report.totals()
    ratio = report.imbalance()
    errors, warnings = len(report.errors()), len(report.warnings())
    return (
        f"data check: {totals['usable_images']} usable images of {totals['files']} files, "
        f"{totals['models']} models, {totals['skus']} SKUs"
        + (f", imbalance {ratio:.1f}x" if ratio is not None else "")
        + f"; {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    )


def _print_list(title: str, lines: list[str], colour: str) -> None:
    if not lines:
        return
    out.print(f"[{colour}]{title}[/] ({len(lines)})", highlight=False)
    for line in lines[:LISTED]:
        out.print(f"  {line}", markup=False, highlight=False)
    if len(lines) > LISTED:
        out.print(f"  ... and {len(lines) - LISTED} more (--json lists them all)")
