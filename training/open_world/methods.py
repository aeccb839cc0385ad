"""The open-world methods (which score each stage compares with its threshold) and the knobs of a
calibration (budget, split), with the checks that give one clear error for a wrong one."""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import InvalidArgument

DEFAULT_METHOD = "energy+cos"
FALLBACK_METHOD = "msp"  # needs no embeddings
DEFAULT_BUDGET = 0.05
DEFAULT_SPLIT = 0.5
MAX_K = 5


@dataclass(frozen=True)
class Method:
    """The stage-1 ("unknown") and stage-2 ("model") score names a method compares."""

    unknown: str
    model: str


METHODS: dict[str, Method] = {
    "energy+cos": Method("energy+cos", "centroid"),
    "msp": Method("msp", "joint"),
    **{f"knn{k}": Method("energy+cos", f"knn{k}") for k in range(1, MAX_K + 1)},
}


def check_method(method: str) -> str:
    """`method` if it is one of METHODS, else one clear error."""
    if method not in METHODS:
        raise InvalidArgument(f"unknown open-world method {method!r}; use {', '.join(METHODS)}")
    return method


def check_budget(budget: float, split: float = DEFAULT_SPLIT) -> None:
    """The budget is a share of photos, the split a share of the budget."""
    if not 0 <= budget < 1:
        raise InvalidArgument(f"--budget must be in [0, 1) (got {budget})")
    if not 0 <= split <= 1:
        raise InvalidArgument(f"--split must be in [0, 1] (got {split})")
