"""The label space of a cascade: sneaker models, and the SKUs of each model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path


@dataclass(frozen=True)
class Labels:
    """Models in index order, and for each model its SKUs; SKU indices run model by model."""

    models: tuple[str, ...]
    skus_by_model: dict[str, tuple[str, ...]]

    @cached_property
    def skus(self) -> tuple[str, ...]:
        """Every SKU, in global index order."""
        return tuple(sku for model in self.models for sku in self.skus_by_model[model])

    @cached_property
    def sku_index(self) -> dict[str, int]:
        """Global index of each SKU label."""
        return {sku: i for i, sku in enumerate(self.skus)}

    @cached_property
    def model_index(self) -> dict[str, int]:
        """Position of each model label in `models`: its class index in stage 1."""
        return {model: i for i, model in enumerate(self.models)}

    @cached_property
    def model_of_sku(self) -> tuple[int, ...]:
        """For each global SKU index, the index of its model."""
        return tuple(m for m, model in enumerate(self.models) for _ in self.skus_by_model[model])

    @cached_property
    def membership(self) -> list[list[int]]:
        """For each model index, the global indices of its SKUs (the stage-2 mask)."""
        return [[self.sku_index[sku] for sku in self.skus_by_model[model]] for model in self.models]

    def to_dict(self) -> dict[str, object]:
        """The `labels.json` content."""
        return {
            "models": list(self.models),
            "skus": {m: list(s) for m, s in self.skus_by_model.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Labels:
        """Parse the `labels.json` content."""
        models = tuple(str(m) for m in data["models"])  # type: ignore[attr-defined]
        skus = data["skus"]
        return cls(models=models, skus_by_model={m: tuple(skus[m]) for m in models})  # type: ignore[index]

    def save(self, path: Path) -> None:
        """Write `labels.json`."""
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Labels:
        """Read `labels.json`."""
        return cls.from_dict(json.loads(path.read_text()))
