"""K-fold cross-validation: disjoint folds that keep copies of a photo together, and `skuai train
--kfold 2` on the tiny catalog reporting the cascade and the flat comparison as mean ± std."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner

from shared.errors import InvalidArgument
from skuai.cli import cli
from training.data_check import check_dataset
from training.kfold import fold_splits, fold_units


@pytest.fixture(scope="module")
def with_copies(tiny_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny catalog plus byte copies of the first photo of every SKU."""
    out = tmp_path_factory.mktemp("kfold") / "data"
    shutil.copytree(tiny_catalog, out)
    for sku in sorted(p for p in out.glob("*/*") if p.is_dir()):
        first = sorted(sku.glob("*.png"))[0]
        for n in range(2):
            shutil.copyfile(first, sku / f"copy{n}-{first.name}")
    return out


def test_folds_are_disjoint_and_keep_copies_together(with_copies: Path) -> None:
    report = check_dataset(with_copies, input_size=32)
    samples = report.samples()
    groups = {report.data_dir / path: number for path, number in report.groups.items()}
    copies = [p for p in groups if p.name.startswith("copy")]
    assert copies, "the copies should form duplicate groups"
    folds = fold_units(samples, groups, 3, seed=0)
    paths = [s.path for fold in folds for s in fold]
    assert len(paths) == len(set(paths)) == len(samples)  # every photo tested exactly once
    fold_of = {s.path: n for n, fold in enumerate(folds) for s in fold}
    by_group: dict[int, set[int]] = {}
    for path, group in groups.items():
        by_group.setdefault(group, set()).add(fold_of[path])
    assert all(len(f) == 1 for f in by_group.values())
    for parts in fold_splits(samples, groups, 3, seed=0):
        test = {groups[s.path] for s in parts.test}
        assert not test & {groups[s.path] for s in (*parts.train, *parts.val)}
    with pytest.raises(InvalidArgument):
        fold_units(samples, groups, 1, seed=0)


def test_train_kfold_reports_mean_and_spread(tiny_catalog: Path) -> None:
    args = ["train", str(tiny_catalog), "--kfold", "2", "--compare-flat", "--json", "--epochs",
            "1", "--input-size", "32", "--width", "0.0625", "--weights", "none",
            "--batch-size", "16", "--precision", "fp32"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["k"] == 2 and len(report["folds"]) == 2
    tested = [fold["sizes"]["test"] for fold in report["folds"]]
    assert sum(tested) == 60  # every photo of the tiny catalog tested once
    for model in ("cascade", "flat"):
        top1 = report[model]["sku_top1"]
        assert top1["folds"] == [fold[model]["sku_top1"] for fold in report["folds"]]
        assert top1["mean"] == pytest.approx(statistics.fmean(top1["folds"]))
        assert top1["std"] == pytest.approx(statistics.stdev(top1["folds"]))
