"""Commands for data and models: `skuai synth`, `skuai train`, `skuai models`."""

from __future__ import annotations

from pathlib import Path

import click

from skuai.cli_base import fail, settings
from skuai.console import console
from skuai.train_outcome import echo_json, measure_unknowns, print_open_world
from training.config import BALANCE_MODES, TrainConfig
from training.config import PRECISIONS as TRAINING_PRECISIONS


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
    print_open_world(outcome.metrics.get("open_world"))
    state = "active" if outcome.activated else "not activated"
    console.print(f"version {outcome.version} written to {outcome.path} ({state})")
