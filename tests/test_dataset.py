"""The dataset layout and the 70/20/10 split: stratified, deterministic, no leakage."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from shared.errors import DatasetError
from training.dataset import scan, split


def _tree(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    for model, skus in layout.items():
        for sku, count in skus.items():
            folder = root / model / sku
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{i:03d}.png").write_bytes(b"x")
    return root


def test_scan_reads_the_layout(tiny_catalog: Path) -> None:
    labels, samples = scan(tiny_catalog)
    assert len(labels.models) == 3 and all(len(s) == 2 for s in labels.skus_by_model.values())
    assert len(samples) == 3 * 2 * 10
    assert all(
        s.path.parent.name == s.sku and s.path.parent.parent.name == s.model for s in samples
    )
    assert labels.model_of_sku == (0, 0, 1, 1, 2, 2)


def test_split_is_stratified_disjoint_and_deterministic(tmp_path: Path) -> None:
    data = _tree(tmp_path, {"a": {"a1": 100, "a2": 40}, "b": {"b1": 20}})
    _, samples = scan(data)
    parts = split(samples, seed=1)
    train, val, test = (set(p) for p in (parts.train, parts.val, parts.test))
    assert not (train & val or train & test or val & test)
    assert len(train | val | test) == len(samples)
    for part, fraction in ((parts.train, 0.7), (parts.val, 0.2), (parts.test, 0.1)):
        counts = Counter(s.sku for s in part)
        assert counts["a1"] == round(100 * fraction)
        assert counts["a2"] == round(40 * fraction)
        assert counts["b1"] == round(20 * fraction)
    assert split(samples, seed=1) == parts
    assert split(samples, seed=2).test != parts.test


def test_tiny_skus_keep_a_training_image(tmp_path: Path) -> None:
    _, samples = scan(_tree(tmp_path, {"a": {"a1": 1, "a2": 2}}))
    parts = split(samples, seed=0)
    assert Counter(s.sku for s in parts.train) == {"a1": 1, "a2": 2}


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (None, "does not exist"),
        ({}, "no model folders"),
        ({"a": {}}, "has no SKU folders"),
        ({"a": {"a1": 0}}, "has no images"),
        ({"a": {"x": 1}, "b": {"x": 1}}, "appears under both"),
    ],
)
def test_dataset_errors(tmp_path: Path, layout: dict | None, message: str) -> None:
    root = tmp_path / "data"
    if layout is not None:
        root.mkdir()
        for model, skus in layout.items():
            (root / model).mkdir()
            _tree(root, {model: skus}) if skus else None
    with pytest.raises(DatasetError, match=message):
        scan(root)
