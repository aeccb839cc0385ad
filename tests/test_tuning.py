"""`skuai tune`: a 2-trial study of 1-epoch trials on the tiny catalog, every trial recorded,
resumed from its SQLite file, its best.json read back by `skuai train --config`; the pruning
callback against a real Optuna study."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner, Result

from shared.errors import InvalidArgument
from skuai.cli import cli
from training.config_file import config_from, config_name, read_config_file
from training.tuning_pruning import PruneOnValidation

FIXED = [
    "--input-size", "32", "--width", "0.0625", "--weights", "none", "--batch-size", "16",
    "--precision", "fp32", "--epochs", "1",
]  # fmt: skip


def _tune(catalog: Path, home: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli,
        ["tune", str(catalog), "--study", "t", *FIXED, *args],
        env={"SKUAI_HOME": str(home)},
    )


@pytest.fixture(scope="module")
def study(tiny_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A finished 2-trial study: its SKUAI_HOME and the --json summary."""
    home = tmp_path_factory.mktemp("tune-home")
    result = _tune(tiny_catalog, home, "--trials", "2", "--json")
    assert result.exit_code == 0, result.output
    return home, json.loads(result.output.strip().splitlines()[-1])


def test_every_trial_is_recorded(study: tuple[Path, dict]) -> None:
    home, summary = study
    trials = summary["trials"]
    assert [t["number"] for t in trials] == [0, 1]
    assert trials[0]["baseline"] and not trials[1]["baseline"]
    for trial in trials:
        assert trial["state"] == "complete"
        assert 0 <= trial["val_sku_top1"] <= 1
        assert trial["seconds"] > 0
        assert trial["last_epoch_val_accuracy"] is not None  # what the pruner was fed
        assert trial["config_name"].startswith("cfg-")
        assert {"learning_rate", "weight_decay", "epochs", "patience", "width"} <= set(
            trial["params"]
        )
    assert trials[0]["config_name"] != trials[1]["config_name"]
    assert (home / "tuning" / "studies.db").is_file()
    assert json.loads(Path(summary["files"]["trials"]).read_text()) == trials


def test_best_json_is_a_train_config(study: tuple[Path, dict]) -> None:
    _, summary = study
    best = json.loads(Path(summary["files"]["best"]).read_text())
    assert best["val_sku_top1"] == max(t["val_sku_top1"] for t in summary["trials"])
    config = config_from(read_config_file(Path(summary["files"]["best"])))
    assert config.learning_rate == pytest.approx(best["params"]["learning_rate"])
    assert config.width == best["params"]["width"] and config.input_size == 32
    assert config_name(config) == best["config_name"]


def test_a_study_resumes_and_refuses_other_settings(
    study: tuple[Path, dict], tiny_catalog: Path
) -> None:
    home, summary = study
    again = _tune(tiny_catalog, home, "--trials", "2", "--json")  # 2 finished: nothing to run
    assert again.exit_code == 0, again.output
    assert json.loads(again.output.strip().splitlines()[-1])["trials"] == summary["trials"]
    other = _tune(tiny_catalog, home, "--trials", "3", "--seed", "5")
    assert other.exit_code == 1
    assert "study 't' was started with other settings (seed)" in other.output


def test_train_config_file_errors(tiny_catalog: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    for text, message in [
        ("{", "not a readable JSON file"),
        ('{"learning_rate": "fast"}', "learning_rate must be float"),
        ('{"lr": 0.1}', "unknown setting lr"),
        ('{"epochs": 0}', "--epochs must be at least 1"),
    ]:
        bad.write_text(text)
        result = CliRunner().invoke(cli, ["train", str(tiny_catalog), "--config", str(bad)])
        assert result.exit_code == 1, (text, result.output)
        assert message in result.output and "Traceback" not in result.output
    with pytest.raises(InvalidArgument, match="no such file"):
        read_config_file(tmp_path / "missing.json")


def test_pruner_stops_a_trailing_trial() -> None:
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1)
    )
    leader = study.ask()
    PruneOnValidation(leader, 0).on_epoch_end(0, {"val_accuracy": 0.9})
    study.tell(leader, 0.9)
    trailing = PruneOnValidation(study.ask(), 0)
    with pytest.raises(optuna.TrialPruned):
        trailing.on_epoch_end(0, {"val_accuracy": 0.2})
