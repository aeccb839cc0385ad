"""A version's calibrated open-world decision as it is stored (open_world.json: method, budget,
every method's thresholds, z-score statistics; open_world.npz: the Bank) and applied to answers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.decisions import DECISIONS
from shared.errors import ConfigError, InvalidArgument
from training.atomic_files import replace_atomically, write_json_atomically
from training.open_world.bank import Bank
from training.open_world.evidence import Evidence
from training.open_world.methods import FALLBACK_METHOD, METHODS, check_method
from training.open_world.scores import decision_codes, raw_scores, with_combination

CALIBRATION_FILE = "open_world.json"
BANK_FILE = "open_world.npz"


@dataclass(frozen=True)
class OpenWorld:
    """A version's calibrated open-world decision."""

    method: str
    budget: float
    split: float
    thresholds: dict[str, dict[str, float | None]]  # method -> {"unknown": t1, "model": t2}
    stats: dict[str, list[float]]  # score -> [mean, std] on the validation photos
    bank: Bank
    info: dict[str, Any]  # how it was fitted (photos, time): reported, not used

    @classmethod
    def load(cls, folder: Path) -> OpenWorld | None:
        """The version's calibration, or None for a version without one."""
        path = folder / CALIBRATION_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            bank = Bank.load(folder / BANK_FILE)
            return cls(
                method=check_method(data["method"]),
                budget=float(data["budget"]),
                split=float(data["split"]),
                thresholds=data["thresholds"],
                stats=data["stats"],
                bank=bank,
                info=data.get("info", {}),
            )
        except (OSError, ValueError, KeyError, InvalidArgument) as exc:
            raise ConfigError(
                f"the open-world calibration of {folder.name} is unreadable ({exc}); run "
                f"`skuai models calibrate {folder.name}` again"
            ) from None

    def save(self, folder: Path) -> None:
        """open_world.npz, then open_world.json (whose presence makes the calibration count),
        each written whole before it replaces an older one."""
        replace_atomically(folder / BANK_FILE, self.bank.save)
        write_json_atomically(folder / CALIBRATION_FILE, self.record())

    def record(self) -> dict[str, Any]:
        """The open_world.json content."""
        return {
            "method": self.method,
            "budget": self.budget,
            "split": self.split,
            "thresholds": self.thresholds,
            "stats": self.stats,
            "methods": {name: vars(m) for name, m in METHODS.items()},
            "info": self.info,
        }

    def scores(self, evidence: Evidence, *, neighbours: bool = True) -> dict[str, np.ndarray]:
        """Every score the evidence allows, the z-scored combination included."""
        return with_combination(raw_scores(evidence, self.bank, neighbours=neighbours), self.stats)

    def method_for(self, evidence: Evidence) -> str:
        """The version's method, or the fallback where the runners gave no embeddings."""
        if evidence.stage1 is None or evidence.stage2 is None:
            return FALLBACK_METHOD
        return self.method

    def decide(self, evidence: Evidence) -> list[str]:
        """One decision per answer."""
        method = self.method_for(evidence)
        chosen = METHODS[method]
        scores = self.scores(evidence, neighbours=chosen.model.startswith("knn"))
        codes = decision_codes(scores, chosen, self.thresholds[method])
        return [DECISIONS[c] for c in codes]
