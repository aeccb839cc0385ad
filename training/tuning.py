"""`skuai tune`: an Optuna study over the training settings, scored on the validation split only
(the test split stays unseen until `skuai train`), with poor trials pruned on their per-epoch
validation accuracy. The study lives in SQLite under SKUAI_HOME, so an interrupted search
resumes where it stopped; every trial records its settings, score, time and config name."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shared.errors import InvalidArgument
from training.config import TrainConfig
from training.config_file import config_name
from training.data_check import DataReport
from training.split_record import checked_split
from training.tuning_space import base_params, suggest

# Stage 2's epochs are reported at this offset, so the pruner compares stage 1 epochs with
# stage 1 epochs and stage 2 epochs with stage 2 epochs across trials.
STAGE_STEP = {"stage 1": 0, "stage 2": 1000}
STUDY_FILE = "studies.db"


@dataclass(frozen=True)
class TuneRequest:
    """What to search: the data, the fixed settings, and how long."""

    check: DataReport
    base: TrainConfig
    trials: int
    timeout: float | None
    study: str
    home: Path
    force: bool = False


def storage_url(home: Path) -> str:
    """The SQLite file that holds every study of this SKUAI_HOME."""
    folder = home / "tuning"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / STUDY_FILE).resolve()}"


def open_study(request: TuneRequest) -> Any:
    """The named study, created or resumed; a resume with other fixed settings is refused."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(
        storage_url(request.home), heartbeat_interval=30, grace_period=90
    )
    study = optuna.create_study(
        study_name=request.study,
        storage=storage,
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
        load_if_exists=True,
    )
    # a resumed study draws new points, not the first run's again
    study.sampler = optuna.samplers.TPESampler(seed=request.base.seed + finished(study))
    fixed = {**request.base.to_dict(), "data_dir": str(request.check.data_dir.resolve())}
    recorded = study.user_attrs.get("fixed")
    if recorded is None:
        study.set_user_attr("fixed", fixed)
        # trial 0 is the untuned config: the "before" of the summary
        study.enqueue_trial(base_params(request.base), user_attrs={"baseline": True})
    elif recorded != fixed:
        changed = sorted(k for k in fixed if recorded.get(k) != fixed[k])
        raise InvalidArgument(
            f"study {request.study!r} was started with other settings ({', '.join(changed)}): "
            "pass the same ones to resume it, or name a new study with --study"
        )
    return study


def finished(study: Any) -> int:
    """Trials of the study that finished: completed or pruned."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def run_study(
    request: TuneRequest, on_trial: Callable[[dict[str, Any]], None] | None = None
) -> Any:
    """Run trials until the study holds `request.trials` finished ones (or the timeout)."""
    import optuna

    study = open_study(request)
    optuna.storages.fail_stale_trials(study)  # a run killed mid-trial leaves it RUNNING
    remaining = request.trials - finished(study)
    if remaining > 0:
        labels, parts, _ = checked_split(request.check, seed=request.base.seed, force=request.force)
        if not parts.val:
            raise InvalidArgument("the dataset has no validation photos to score trials on")
        objective = _objective(request.base, labels, parts)
        callbacks = [_reporter(on_trial)] if on_trial else []
        study.optimize(objective, n_trials=remaining, timeout=request.timeout, callbacks=callbacks)
    return study


def _objective(base: TrainConfig, labels: Any, parts: Any) -> Callable[[Any], float]:
    """Fit the trial's config on the train split; its score: end-to-end SKU top-1 on val."""

    def objective(trial: Any) -> float:
        from training.evaluate import evaluate
        from training.loading import load_arrays
        from training.split_fit import cascade_of, fit_split

        config = replace(base, **suggest(trial, base))
        name = config_name(config)
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("config_name", name)
        clock = time.perf_counter()
        try:
            trained = fit_split(labels, parts, config, callbacks_for=_pruning(trial))
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - clock, 1))
        val = load_arrays(parts.val, labels, size=config.input_size)
        metrics = evaluate(cascade_of(trained, labels, config, name), val)
        trial.set_user_attr("val_model_top1", metrics["end_to_end"]["model_top1"])
        trial.set_user_attr("seconds", round(time.perf_counter() - clock, 1))
        return float(metrics["end_to_end"]["sku_top1"])

    return objective


def _pruning(trial: Any) -> Callable[[str], tuple[Any, ...]]:
    """The pruning callback for each stage's fit (none for the flat comparison)."""
    from training.tuning_pruning import PruneOnValidation

    def callbacks_for(key: str) -> tuple[Any, ...]:
        return (PruneOnValidation(trial, STAGE_STEP[key]),) if key in STAGE_STEP else ()

    return callbacks_for


def _reporter(on_trial: Callable[[dict[str, Any]], None]) -> Callable[[Any, Any], None]:
    def report(study: Any, trial: Any) -> None:
        on_trial(trial_row(trial))

    return report


def trial_row(trial: Any) -> dict[str, Any]:
    """One trial as recorded: its number, state, settings, score, time and config name."""
    values = trial.intermediate_values
    complete = trial.state.name == "COMPLETE"
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "baseline": bool(trial.user_attrs.get("baseline", False)),
        "params": trial.params,
        # a pruned trial's value is its last epoch's stage accuracy: not an end-to-end score
        "val_sku_top1": trial.value if complete else None,
        "last_step": max(values) if values else None,
        "val_model_top1": trial.user_attrs.get("val_model_top1"),
        "last_epoch_val_accuracy": values[max(values)] if values else None,
        "seconds": trial.user_attrs.get("seconds"),
        "config_name": trial.user_attrs.get("config_name"),
    }


def summary(study: Any) -> dict[str, Any]:
    """The study's trials, its best and its baseline (trial 0, the untuned settings)."""
    import optuna

    rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    best = max(complete, key=lambda t: t.value) if complete else None
    baseline = next((r for r in rows if r["baseline"]), None)
    states = optuna.trial.TrialState
    return {
        "study": study.study_name,
        "trials": rows,
        "finished": sum(r["state"] in ("complete", "pruned") for r in rows),
        "pruned": sum(t.state == states.PRUNED for t in study.get_trials(deepcopy=False)),
        "seconds": round(sum(r["seconds"] or 0 for r in rows), 1),
        "baseline": baseline,
        "best": trial_row(best) if best else None,
        "best_config": best.user_attrs["config"] if best else None,
    }
