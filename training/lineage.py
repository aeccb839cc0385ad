"""Where a version comes from: its parent (None for a full train), the SKUs and models it added
or removed, and a summary of the data check it was trained after. Every version records this
`lineage` in config.json and metrics.json; `skuai models list` and `GET /v1/models` show it.

No TensorFlow here: the CLI compares catalogs and refuses a shrinking one before loading it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import InvalidArgument
from training.labels import Labels

if TYPE_CHECKING:
    from training.data_check import DataReport

NAMES_SHOWN = 3  # names an error message lists before "and N more"


@dataclass(frozen=True)
class CatalogChange:
    """What a dataset adds to and removes from a version's catalog, by label, sorted."""

    added_skus: tuple[str, ...] = ()
    removed_skus: tuple[str, ...] = ()
    added_models: tuple[str, ...] = ()
    removed_models: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the catalogs are the same."""
        return not (
            self.added_skus or self.removed_skus or self.added_models or self.removed_models
        )

    @property
    def removes(self) -> bool:
        """True when the new catalog lacks a SKU or model of the old one."""
        return bool(self.removed_skus or self.removed_models)

    def to_dict(self) -> dict[str, list[str]]:
        """The four lists as JSON-ready values."""
        return {
            "added_skus": list(self.added_skus),
            "removed_skus": list(self.removed_skus),
            "added_models": list(self.added_models),
            "removed_models": list(self.removed_models),
        }


def compare(parent: Labels, new: Labels) -> CatalogChange:
    """The change from `parent`'s catalog to `new`'s."""
    old_skus, new_skus = set(parent.skus), set(new.skus)
    old_models, new_models = set(parent.models), set(new.models)
    return CatalogChange(
        added_skus=tuple(sorted(new_skus - old_skus)),
        removed_skus=tuple(sorted(old_skus - new_skus)),
        added_models=tuple(sorted(new_models - old_models)),
        removed_models=tuple(sorted(old_models - new_models)),
    )


def labels_of_report(report: DataReport) -> Labels:
    """The catalog a checked dataset trains: models and SKUs that have a usable image (what
    `training.dataset.labels_of` gives for the usable samples)."""
    from training.dataset import labels_of

    return labels_of(report.samples())


def refusal(change: CatalogChange, parent: str, *, allow_removals: bool) -> str | None:
    """Why an incremental version of `parent` with `change` cannot be trained, or None."""
    if change.empty:
        return (
            f"the dataset has exactly {parent}'s models and SKUs: nothing to add (add SKU "
            "folders, or train a full version without --from)"
        )
    if change.removes and not allow_removals:
        missing = [f"SKU {s}" for s in change.removed_skus] + [
            f"model {m}" for m in change.removed_models
        ]
        more = len(missing) - NAMES_SHOWN
        shown = ", ".join(missing[:NAMES_SHOWN]) + (f" and {more} more" if more > 0 else "")
        return (
            f"the dataset lacks {len(missing)} of {parent}'s SKUs or models ({shown}); pass "
            "--allow-removals to drop them from the new version"
        )
    return None


def check_change(change: CatalogChange, parent: str, *, allow_removals: bool) -> None:
    """Raise InvalidArgument with `refusal`'s message when there is one."""
    reason = refusal(change, parent, allow_removals=allow_removals)
    if reason is not None:
        raise InvalidArgument(reason)


def check_summary(report: DataReport) -> dict[str, int]:
    """The data check's counts a version keeps: files, usable images, models, SKUs, errors
    and warnings."""
    return {**report.totals(), "errors": len(report.errors()), "warnings": len(report.warnings())}


def lineage(
    report: DataReport, *, parent: str | None = None, change: CatalogChange | None = None
) -> dict[str, Any]:
    """The `lineage` record of a version: a full train has no parent and no change."""
    return {
        "parent": parent,
        **(change or CatalogChange()).to_dict(),
        "data_check": check_summary(report),
    }


def describe(found: dict[str, Any] | None) -> str:
    """One short line for `skuai models list`: `full`, or `from v3 +2 SKUs -1 model`."""
    if found is None:
        return "-"
    if found.get("parent") is None:
        return "full"
    counts = [
        (len(found.get(f"{sign}_{kind}s") or []), mark, kind)
        for sign, mark in (("added", "+"), ("removed", "-"))
        for kind in ("sku", "model")
    ]
    changes = " ".join(
        f"{mark}{n} {'SKU' if kind == 'sku' else 'model'}{'s' * (n != 1)}"
        for n, mark, kind in counts
        if n
    )
    return f"from {found['parent']} {changes}".strip()
