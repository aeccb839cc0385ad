"""`skuai train DATA --kfold K` and `skuai models evaluate VERSION DATA --kfold K`: K trainings
on K disjoint test folds (training/kfold.py), printed as mean ± std with per-fold values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from skuai.cli_base import fail
from skuai.console import console
from training.config import TrainConfig


def kfold_command(data: Path, config: TrainConfig, k: int, *, force: bool, as_json: bool) -> None:
    """Check DATA, run the K folds, print the result (nothing is registered)."""
    from skuai.cli_data import run_check
    from skuai.quiet import import_tensorflow_quietly
    from training.kfold import run_kfold

    check = run_check(data, input_size=config.input_size, quiet=True)
    if check.errors() and not force:
        fail(f"{data} has errors (run `skuai data check {data}`), or pass --force")
    import_tensorflow_quietly()
    if not as_json:
        flat = " and the flat comparison" if config.compare_flat else ""
        console.print(f"{k}-fold cross-validation of the cascade{flat} on {data}")
    result = run_kfold(check, config, k, force=force, on_fold=None if as_json else _print_fold)
    if as_json:
        click.echo(json.dumps(result))
        return
    for model in ("cascade", "flat"):
        for metric, values in result.get(model, {}).items():
            console.print(f"  {model:<8} {metric:<22} {describe(values)}")


def describe(values: dict[str, Any]) -> str:
    """`91.2% ± 1.3 (90.0, 92.4, 91.1)`: mean ± standard deviation in points, per fold."""
    folds = ", ".join(f"{v:.1%}" for v in values["folds"])
    return f"{values['mean']:.2%} ± {values['std'] * 100:.2f} points  ({folds})"


def _print_fold(row: dict[str, Any]) -> None:
    sizes = row["sizes"]
    flat = f", flat {row['flat']['sku_top1']:.2%}" if "flat" in row else ""
    console.print(
        f"  fold {row['fold']}: cascade SKU top-1 {row['cascade']['sku_top1']:.2%}{flat} "
        f"(train {sizes['train']}, val {sizes['val']}, test {sizes['test']}; "
        f"{row['seconds']:.0f} s)"
    )
