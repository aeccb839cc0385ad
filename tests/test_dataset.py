"""The dataset layout and the 70/20/10 split: stratified, deterministic, no leakage (copies of a
photo, grouped by the data check, never sit in two parts)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from shared.errors import DatasetError
from tests.messy_dataset import FORMATS, encode, photo
from training.dataset import SPLIT_FRACTIONS, Sample, list_dataset, scan, split


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


def test_scan_takes_every_accepted_format_and_lists_other_files(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "runner" / "red"
    folder.mkdir(parents=True)
    for seed, (fmt, suffix) in enumerate(FORMATS):
        (folder / f"p{seed}{suffix.upper() if seed % 2 else suffix}").write_bytes(
            encode(photo(seed), fmt)
        )
    (folder / "notes.txt").write_text("not a photo")
    (folder / "scan.pdf").write_bytes(b"%PDF-1.4")
    (folder / ".DS_Store").write_bytes(b"\0")  # hidden: not part of the dataset
    listing = list_dataset(tmp_path / "data")
    assert len(listing.images) == len(FORMATS) == 8
    assert sorted(s.path.name for s in listing.other_files) == ["notes.txt", "scan.pdf"]
    labels, samples = scan(tmp_path / "data")
    assert labels.skus == ("red",) and len(samples) == 8


# A dataset as (SKU sizes, group sizes): photos are dealt into groups of copies in order.
_datasets = st.lists(st.integers(1, 40), min_size=1, max_size=6).flatmap(
    lambda sizes: st.tuples(
        st.just(sizes), st.lists(st.integers(1, 6), min_size=sum(sizes), max_size=sum(sizes))
    )
)


def _grouped(sizes: list[int], group_sizes: list[int]) -> tuple[list[Sample], dict[Path, int]]:
    samples = [
        Sample(Path(f"/d/m{k % 2}/s{k}/{i:03d}.png"), f"m{k % 2}", f"s{k}")
        for k, n in enumerate(sizes)
        for i in range(n)
    ]
    groups: dict[Path, int] = {}
    at = 0
    for number, size in enumerate(group_sizes):
        for sample in samples[at : at + size]:
            groups[sample.path] = number  # runs of neighbours: some groups span two SKUs
        at += size
        if at >= len(samples):
            break
    return samples, groups


@hypothesis_settings(max_examples=200, deadline=None)
@given(dataset=_datasets, seed=st.integers(0, 10**6))
def test_grouped_split_never_separates_a_group(
    dataset: tuple[list[int], list[int]], seed: int
) -> None:
    samples, groups = _grouped(*dataset)
    parts = split(samples, seed=seed, groups=groups)
    part_of = {s.path: name for name in ("train", "val", "test") for s in getattr(parts, name)}
    assert sorted(part_of) == sorted(s.path for s in samples)  # each sample exactly once
    assert sum(len(p) for p in (parts.train, parts.val, parts.test)) == len(samples)
    members: dict[int, set[str]] = {}
    for path, number in groups.items():
        members.setdefault(number, set()).add(part_of[path])
    assert all(len(names) == 1 for names in members.values())
    by_sku = Counter(s.sku for s in samples)
    for name, fraction in (("val", SPLIT_FRACTIONS[1]), ("test", SPLIT_FRACTIONS[2])):
        counts = Counter(s.sku for s in getattr(parts, name))
        assert all(counts[sku] <= round(n * fraction) for sku, n in by_sku.items())
    assert set(Counter(s.sku for s in parts.train)) == set(by_sku)  # every SKU trains
    assert split(samples, seed=seed, groups=groups) == parts


def test_groups_are_what_keeps_copies_together() -> None:
    """Without the groups the same split separates copies: the property above can fail."""
    samples, groups = _grouped([60, 60], [3] * 40)
    separated = 0
    for seed in range(5):
        plain = split(samples, seed=seed)
        part_of = {s.path: n for n in ("train", "val", "test") for s in getattr(plain, n)}
        members: dict[int, set[str]] = {}
        for path, number in groups.items():
            members.setdefault(number, set()).add(part_of[path])
        separated += sum(len(names) > 1 for names in members.values())
    assert separated > 0


def test_a_group_across_skus_trains() -> None:
    samples, _ = _grouped([10, 10], [])
    shared = {samples[0].path: 0, samples[10].path: 0}  # one photo filed under two SKUs
    for seed in range(10):
        train = set(split(samples, seed=seed, groups=shared).train)
        assert samples[0] in train and samples[10] in train
