"""The open-world decision every result carries (issue 18): how far the answer goes. Declared
here, without TensorFlow, for the API, the stores and the exports; the cascade
(training/cascade.py) makes it."""

from __future__ import annotations

from typing import Any, Literal, get_args

from shared.errors import BadRequest

# "sku": a catalog SKU, confidently; "model": the model is known, the colourway is uncertain or
# not in the catalog; "unknown": not a catalog model.
Decision = Literal["sku", "model", "unknown"]
DECISIONS: tuple[str, ...] = get_args(Decision)
SKU = "sku"
# A result stored before decisions existed (or made by a version without calibration) gave a
# catalog SKU as its answer: it reads as one.
DEFAULT = SKU
# The `?decision=` filter: one or more decisions, comma-separated, nothing else.
_ONE = "(" + "|".join(DECISIONS) + ")"
FILTER_PATTERN = f"^{_ONE}(,{_ONE})*$"


def decision_of(result: dict[str, Any]) -> str:
    """The result's decision; DEFAULT for a result stored without one."""
    return str(result.get("decision") or DEFAULT)


def with_decision(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The result with its decision filled in (DEFAULT where it has none)."""
    if result is None or "decision" in result:
        return result
    return {**result, "decision": DEFAULT}


def parse_filter(value: object) -> tuple[str, ...] | None:
    """`?decision=model,unknown` as ('model', 'unknown') in DECISIONS' order; a 400 naming the
    accepted values for anything else."""
    if value is None or isinstance(value, tuple):
        return value
    wanted = str(value).split(",")
    wrong = [w for w in wanted if w not in DECISIONS]
    if wrong:
        raise BadRequest(
            f"decision: {wrong[0]!r} is not a decision; send one or more of "
            f"{', '.join(DECISIONS)}, comma-separated (e.g. decision=model,unknown)"
        )
    return tuple(d for d in DECISIONS if d in wanted)
