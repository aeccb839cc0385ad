"""The Keras callback that feeds a trial's per-epoch validation accuracy to Optuna's pruner and
stops the trial when the pruner says it trails the others."""

from __future__ import annotations

from typing import Any

import keras


class PruneOnValidation(keras.callbacks.Callback):
    """Reports `val_accuracy` after each epoch at step `offset + epoch`; raises TrialPruned."""

    def __init__(self, trial: Any, offset: int) -> None:
        super().__init__()
        self.trial = trial
        self.offset = offset
        self.epoch = 0  # fit_stage may call fit twice (frozen, then fine-tuned): count across

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        import optuna

        score = (logs or {}).get("val_accuracy")
        step = self.offset + self.epoch
        self.epoch += 1
        if score is None:
            return
        self.trial.report(float(score), step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"val accuracy {score:.4f} at epoch {step - self.offset + 1}")
