"""`skuai tune DATA`: a hyperparameter search scored on the validation split (training/tuning.py),
resumable, and its best settings written as a file `skuai train --config` takes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from skuai.cli_base import fail, settings
from skuai.config_overrides import explicit_settings
from skuai.console import console
from training.config import TrainConfig

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@click.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--trials",
    default=20,
    show_default=True,
    type=click.IntRange(1),
    help="Trials the study should hold; a resumed study counts the ones it finished.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=None,
    help="Stop starting trials after this many seconds.",
)
@click.option(
    "--study",
    default=None,
    help="Study name [default: tune-<DATA folder name>]; the same name resumes it.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for best.json and trials.json [default: SKUAI_HOME/tuning/STUDY].",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Fixed settings from a JSON file (a version's config.json, a best.json).",
)
@click.option("--input-size", default=TrainConfig.input_size, show_default=True)
@click.option(
    "--epochs",
    default=TrainConfig.epochs,
    show_default=True,
    help="The most epochs a trial runs (epochs are searched up to it).",
)
@click.option("--batch-size", default=TrainConfig.batch_size, show_default=True)
@click.option("--weights", default=TrainConfig.weights, show_default=True)
@click.option(
    "--width",
    default=TrainConfig.width,
    show_default=True,
    help="The widest trunk tried (narrower ones are too, unless pretrained).",
)
@click.option("--precision", default=TrainConfig.precision, show_default=True)
@click.option("--seed", default=TrainConfig.seed, show_default=True)
@click.option("--force", is_flag=True, help="Tune even when the data check finds errors.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def tune(
    data: Path,
    trials: int,
    timeout: float | None,
    study: str | None,
    out: Path | None,
    config_file: Path | None,
    force: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Search learning rate, weight decay, epochs, patience, width and augmentation strength on
    DATA's validation split; write the best settings as best.json for `skuai train --config`."""
    from skuai.cli_data import run_check
    from skuai.quiet import import_tensorflow_quietly
    from training.tuning import TuneRequest, run_study, summary

    base = explicit_settings(config_file, options)
    name = study or f"tune-{data.resolve().name}"
    if not STUDY_NAME.match(name):
        fail(f"--study {name!r}: use letters, digits, '.', '_' and '-' (at most 64)")
    home = settings().home
    check = run_check(data, input_size=base.input_size, quiet=True)
    errors = check.errors()
    if errors and not force:
        fail(f"{data} has {len(errors)} errors (run `skuai data check {data}`), or pass --force")
    import_tensorflow_quietly()
    _quiet_optuna()
    request = TuneRequest(check, base, trials, timeout, name, home, force)
    if not as_json:
        console.print(f"study {name} ({trials} trials) in {home / 'tuning'}")
    result = summary(run_study(request, on_trial=None if as_json else _print_trial))
    folder = out or home / "tuning" / name
    result["files"] = _write_results(folder, result)
    if as_json:
        click.echo(json.dumps(result))
        return
    _print_summary(result, data)


def _quiet_optuna() -> None:
    """The heartbeat that lets a killed study resume is marked experimental: not news to users."""
    import warnings

    import optuna
    import tensorflow as tf

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    tf.get_logger().setLevel("ERROR")  # retracing notes: each trial builds new models


def _print_trial(row: dict[str, Any]) -> None:
    """One line per finished trial."""
    score = row["val_sku_top1"]
    shown = f"val SKU top-1 {score:.2%}" if score is not None else row["state"]
    if row["state"] == "pruned" and row["last_step"] is not None:
        stage, epoch = divmod(row["last_step"], 1000)
        shown = (
            f"pruned after stage {stage + 1} epoch {epoch + 1} (val accuracy "
            f"{row['last_epoch_val_accuracy']:.2%})"
        )
    params = ", ".join(f"{k}={_short(v)}" for k, v in row["params"].items())
    label = " (untuned)" if row["baseline"] else ""
    console.print(
        f"  trial {row['number']}{label}: {shown} in {row['seconds'] or 0:.0f} s  "
        f"({row['config_name']})  {params}"
    )


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _write_results(folder: Path, result: dict[str, Any]) -> dict[str, str]:
    """best.json (settings under "config", with the score) and trials.json (every trial)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"trials": str(folder / "trials.json")}
    (folder / "trials.json").write_text(json.dumps(result["trials"], indent=1) + "\n")
    if result["best"] is not None:
        best = {"config": result["best_config"], "study": result["study"], **result["best"]}
        (folder / "best.json").write_text(json.dumps(best, indent=2) + "\n")
        files["best"] = str(folder / "best.json")
    return files


def _print_summary(result: dict[str, Any], data: Path) -> None:
    """Before (the untuned trial) and after (the best), the trial count and the time."""
    before, best = result["baseline"], result["best"]
    console.print(
        f"{result['finished']} trials finished ({result['pruned']} pruned) "
        f"in {result['seconds']:.0f} s of training"
    )
    if before and before["val_sku_top1"] is not None:
        console.print(
            f"  untuned (trial {before['number']}): val SKU top-1 {before['val_sku_top1']:.2%}"
        )
    if best is None:
        console.print("no trial completed")
        return
    console.print(
        f"  best    (trial {best['number']}): val SKU top-1 {best['val_sku_top1']:.2%}"
        f"  ({best['config_name']})"
    )
    console.print(f"best settings: {result['files']['best']}")
    console.print(f"train with them: skuai train {data} --config {result['files']['best']}")
