"""Commands for data and models: `skuai synth`, `skuai train`, `skuai models`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from skuai.cli_base import fail, settings
from skuai.console import console
from skuai.train_outcome import echo_json, measure_unknowns
from training.config import BALANCE_MODES, TrainConfig
from training.config import PRECISIONS as TRAINING_PRECISIONS
from training.open_world import DEFAULT_BUDGET, DEFAULT_METHOD, DEFAULT_SPLIT
from training.open_world import METHODS as OPEN_WORLD_METHODS


@click.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--models", default=4, show_default=True)
@click.option(
    "--skus-per-model",
    default="3",
    show_default=True,
    callback=lambda ctx, param, value: _count_or_range(value),
    help="SKUs of every model, or MIN-MAX for an uneven catalog (counts spread over the range).",
)
@click.option("--images-per-sku", default=30, show_default=True)
@click.option("--size", default=64, show_default=True, help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--format",
    "image_format",
    default="png",
    show_default=True,
    type=click.Choice(["png", "jpg", "webp"]),
)
@click.option(
    "--variation",
    default="standard",
    show_default=True,
    type=click.Choice(["standard", "hard"]),
    help="Photo variation; 'hard' is stronger than anything training sees.",
)
@click.option(
    "--imbalance",
    default=1.0,
    show_default=True,
    type=click.FloatRange(1, 1000),
    help="Ratio of the largest to the smallest SKU's image count (1: balanced).",
)
@click.option(
    "--scraped",
    is_flag=True,
    help="Make it look scraped: mixed formats, duplicate copies, a one-photo SKU, a truncated "
    "download and a non-image file (OUT/scraped.json lists them).",
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(1),
    help="Drawing processes [default: one per CPU].",
)
def synth(
    out: Path,
    models: int,
    skus_per_model: int | tuple[int, int],
    images_per_sku: int,
    size: int,
    seed: int,
    image_format: str,
    variation: str,
    imbalance: float,
    scraped: bool,
    workers: int | None,
) -> None:
    """Write a synthetic sneaker catalog to OUT/<model>/<sku>/."""
    import os

    from skuai.console import make_progress
    from training.synth import image_counts, sku_counts, synthesize

    try:
        skus = sum(sku_counts(models, skus_per_model, seed))
        total = sum(image_counts(skus, images_per_sku, imbalance, seed))
    except ValueError:
        total = None  # synthesize names the bad argument below
    with make_progress(transient=True) as progress:  # erased: the summary line follows
        task = progress.add_task("drawing sneakers", total=total)
        catalog = synthesize(
            out,
            models=models,
            skus_per_model=skus_per_model,
            images_per_sku=images_per_sku,
            size=size,
            seed=seed,
            image_format=image_format,
            variation=variation,
            imbalance=imbalance,
            workers=workers or os.cpu_count() or 1,
            progress=lambda n: progress.advance(task, n),
        )
    console.print(
        f"wrote {total} images of {len(catalog.models)} models and "
        f"{len(catalog.skus)} SKUs to {out}"
    )
    if scraped:
        from training.scraped import roughen

        mess = roughen(out, seed=seed)
        console.print(
            f"made it look scraped: {len(mess.copies)} copies, formats "
            + ", ".join(f"{n} {fmt}" for fmt, n in sorted(mess.formats.items()))
            + f"; one photo left in {mess.single_photo_sku}; see {out / 'scraped.json'}"
        )


def _count_or_range(value: str) -> int | tuple[int, int]:
    """`N` or `MIN-MAX` (whole numbers); synthesize checks the bounds."""
    low, dash, high = str(value).partition("-")
    try:
        return (int(low), int(high)) if dash else int(low)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not N or MIN-MAX") from None


@click.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--registry",
    type=click.Path(path_type=Path),
    default=None,
    help="Registry folder (default: SKUAI_REGISTRY, or SKUAI_HOME/registry).",
)
@click.option("--input-size", default=224, show_default=True)
@click.option("--epochs", default=20, show_default=True)
@click.option("--batch-size", default=32, show_default=True)
@click.option("--weights", default="imagenet", show_default=True, help="imagenet, none or PATH.")
@click.option(
    "--width",
    default=1.0,
    show_default=True,
    help="Channel width multiplier: below 1 only for tests and demos.",
)
@click.option("--patience", default=4, show_default=True, help="Early-stopping patience.")
@click.option(
    "--occlusion",
    default=0.3,
    show_default=True,
    help="Share of training images given a random occluding patch.",
)
@click.option(
    "--balance",
    default=TrainConfig.balance,
    show_default=True,
    type=click.Choice(BALANCE_MODES),
    help="Class weights: balanced (weights), tempered (sqrt: 1/sqrt(count)), or none.",
)
@click.option(
    "--compare-flat",
    is_flag=True,
    help="Also train a flat single-stage SKU classifier of similar cost and report both.",
)
@click.option(
    "--precision",
    default="auto",
    show_default=True,
    type=click.Choice(TRAINING_PRECISIONS),
    help="Training compute: auto is fp16 on a GPU, bf16 on a CPU with BF16 units, else fp32. "
    "Versions are saved in float32 either way.",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed of the split and the weights [default: 0; with --from, VERSION's].",
)
@click.option("--no-activate", is_flag=True, help="Register the version without activating it.")
@click.option(
    "--force",
    is_flag=True,
    help="Train even when the data check finds errors, leaving the unusable files out.",
)
@click.option(
    "--unknowns",
    type=click.Path(path_type=Path),
    default=None,
    help="Photos (DIR/<model>/<sku>/) of SKUs and models not in DATA: measure the open-world "
    "decision on them (unknown colourways flagged, unknown models answered unknown).",
)
@click.option(
    "--from",
    "from_version",
    default=None,
    metavar="VERSION",
    help="Add DATA's new SKUs and models to VERSION's catalog, starting from its weights and "
    "training only what changed (seconds, not a full train); VERSION's input size, width and "
    "split are kept, the other training options do not apply.",
)
@click.option(
    "--allow-removals",
    is_flag=True,
    help="With --from: drop the SKUs and models of VERSION that DATA lacks (refused otherwise).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Training settings from a JSON file (`skuai tune`'s best.json, a version's "
    "config.json); options given on the command line override it.",
)
@click.option(
    "--kfold",
    type=click.IntRange(2),
    default=None,
    metavar="K",
    help="Cross-validate instead: train K times, each tested on its own fold (duplicates kept "
    "within a fold); metrics as mean ± std with per-fold values. Registers nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def train(
    data: Path,
    registry: Path | None,
    input_size: int,
    epochs: int,
    batch_size: int,
    weights: str,
    width: float,
    patience: int,
    occlusion: float,
    balance: str,
    compare_flat: bool,
    precision: str,
    seed: int,
    no_activate: bool,
    force: bool,
    unknowns: Path | None,
    from_version: str | None,
    allow_removals: bool,
    config_file: Path | None,
    kfold: int | None,
    as_json: bool,
) -> None:
    """Train both stages on DATA, evaluate on the held-out split, write a new model version."""
    from skuai.cli_data import print_summary, run_check
    from skuai.config_overrides import explicit_settings
    from skuai.console import training_events
    from skuai.quiet import import_tensorflow_quietly
    from training.evaluate import summary_rows
    from training.registry import Registry
    from training.train import train as run_training

    options = {
        "input_size": input_size,
        "epochs": epochs,
        "batch_size": batch_size,
        "weights": weights,
        "width": width,
        "patience": patience,
        "occlusion": occlusion,
        "balance": balance,
        "compare_flat": compare_flat,
        "precision": precision,
        "seed": 0 if seed is None else seed,
    }
    if config_file is not None and seed is None:
        del options["seed"]  # the file's seed, unless --seed is given
    config = explicit_settings(config_file, options)
    if kfold is not None:
        if from_version is not None:
            fail("--kfold trains from scratch: it does not combine with --from")
        from skuai.cli_kfold import kfold_command

        kfold_command(data, config, kfold, force=force, as_json=as_json)
        return
    reg = Registry(registry or settings().registry_dir)
    if from_version is not None:
        from skuai.cli_incremental import train_incremental

        train_incremental(
            data,
            reg,
            from_version,
            allow_removals=allow_removals,
            activate=not no_activate,
            force=force,
            seed=seed,
            as_json=as_json,
            unknowns=unknowns,
        )
        return
    # The data check comes first, so a bad dataset is reported before TensorFlow loads.
    check = run_check(data, input_size=config.input_size, quiet=as_json)
    if not as_json:
        print_summary(check, force=force)
    errors = check.errors()
    if errors and not force:
        fail(
            f"{data} has {len(errors)} error{'s' * (len(errors) != 1)} (run `skuai data check "
            f"{data}` for the list): fix them, or pass --force to train without the unusable files"
        )
    if unknowns is not None:  # refused before the training, not after it
        from training.open_world_measure import unknown_samples

        unknown_samples({(s.model, s.sku) for s in check.samples()}, unknowns, "the new version")
    import_tensorflow_quietly()
    with training_events(enabled=not as_json) as events:
        outcome = run_training(
            data, reg, config, activate=not no_activate, events=events, check=check, force=force
        )
        measure_unknowns(outcome, unknowns, events)
    if as_json:
        echo_json(outcome)
        return
    for name, value in summary_rows(outcome.metrics):
        console.print(f"  {name:<34} {value}")
    _print_open_world(outcome.metrics.get("open_world"))
    state = "active" if outcome.activated else "not activated"
    console.print(f"version {outcome.version} written to {outcome.path} ({state})")


def _print_open_world(summary: dict[str, object] | None) -> None:
    """The open-world numbers with their targets (issue 18), when the version has them."""
    from training.open_world import summary_rows as open_world_rows

    if summary:
        for name, value in open_world_rows(summary):
            console.print(f"  {name:<34} {value}")


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
    _print_open_world(metrics.get("open_world"))
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
    _print_open_world(summary)
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
