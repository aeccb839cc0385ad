"""`skuai data check` on a messy folder of real files, and `skuai train`'s use of it: it refuses a
dataset with errors, and with --force writes a split in which no held-out photo has a copy among
the training photos."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import imagehash
import pytest
from click.testing import CliRunner
from PIL import Image

from skuai.cli import cli
from tests.messy_dataset import (
    CLASH,
    EXACT,
    NEAR,
    NOT_IMAGES,
    TOO_SMALL,
    UNREADABLE,
    encode,
    messy_dataset,
    write_photos,
)
from tests.support.processes import run_skuai
from training.data_check import check_dataset
from training.dedup import NEAR_DISTANCE, close_pairs, near_groups
from training.split_record import leaks, read_split, recorded_samples

REPORT_KEYS = {
    "data_dir",
    "input_size",
    "min_per_sku",
    "ok",
    "errors",
    "warnings",
    "totals",
    "images_per_sku",
    "imbalance_ratio",
    "not_images",
    "unreadable",
    "clashing_sku_names",
    "exact_duplicates",
    "near_duplicates",
    "near_duplicate_hash",
    "outside_layout",
    "too_small",
    "files",
}
FILE_KEYS = {"path", "model", "sku", "sha256", "phash", "format", "width", "height", "problem"}
TINY_TRAIN = [
    "--input-size=32",
    "--width=0.0625",
    "--weights=none",
    "--epochs=1",
    "--batch-size=16",
    "--precision=fp32",
]


def _groups(rows: list[list[str]]) -> list[frozenset[str]]:
    return sorted((frozenset(row) for row in rows), key=sorted)


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The messy dataset of tests/messy_dataset.py."""
    return messy_dataset(tmp_path_factory.mktemp("messy") / "data")


def test_json_report_finds_every_problem(messy: Path) -> None:
    result = run_skuai("data", "check", str(messy), "--json", "--input-size", "64")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert set(report) == REPORT_KEYS and not report["ok"]
    assert {row["path"] for row in report["not_images"]} == NOT_IMAGES
    assert {row["path"] for row in report["unreadable"]} == UNREADABLE
    assert _groups(report["exact_duplicates"]) == _groups([list(g) for g in EXACT])
    assert _groups(report["near_duplicates"]) == _groups([list(g) for g in NEAR])
    assert _groups(report["clashing_sku_names"]) == [frozenset(CLASH)]
    assert {row["path"] for row in report["too_small"]} == TOO_SMALL
    assert report["outside_layout"] == ["court/court-white/old"]
    assert report["images_per_sku"] == {
        "court": {"court-empty": 0, "court-white": 1, "runner-blue": 12},
        "runner": {"Runner Blue": 12, "runner-red": 20},
    }
    assert report["imbalance_ratio"] == 20.0
    assert report["totals"] == {"files": 48, "usable_images": 45, "models": 2, "skus": 5}
    assert len(report["errors"]) == 5
    assert any("court/court-empty has no usable image" in e for e in report["errors"])
    assert any("court-white has 1 image (< 50)" in w for w in report["warnings"])
    files = report["files"]
    assert len(files) == 48 and all(set(f) >= FILE_KEYS for f in files)
    usable = [f for f in files if f["problem"] is None]
    assert {f["format"] for f in usable} == {
        "JPEG",
        "PNG",
        "WEBP",
        "AVIF",
        "HEIF",
        "GIF",
        "TIFF",
        "BMP",
    }
    assert all(len(f["sha256"]) == 64 and len(f["phash"]) == 64 for f in usable)
    assert result.stderr.strip().splitlines() == [
        f"error: 5 errors in {messy}: fix them, or train with --force to leave the unusable "
        "files out"
    ]


def test_human_report_lists_problems_and_exit_codes(messy: Path, tmp_path: Path) -> None:
    result = run_skuai("data", "check", str(messy), "--min-per-sku", "10")
    assert result.returncode == 1, result.stderr
    for line in ("errors (5)", *sorted(NOT_IMAGES), *sorted(UNREADABLE), "runner-blue"):
        assert line in result.stdout
    assert "court-white has 1 image (< 10)" in result.stdout
    assert "Runner Blue has 12" not in result.stdout  # above --min-per-sku 10
    assert "45 usable images of 48 files" in result.stdout
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1

    clean = tmp_path / "clean"
    write_photos(clean / "runner" / "red", range(0, 6))
    write_photos(clean / "runner" / "blue", range(10, 13), "WEBP", ".webp")
    result = run_skuai("data", "check", str(clean), "--input-size", "64")
    assert result.returncode == 0, result.stderr
    assert "0 errors" in result.stdout and "red has 6 images (< 50)" in result.stdout

    result = run_skuai("data", "check", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: dataset folder {tmp_path / 'nowhere'} does not exist"


def test_the_check_does_not_load_tensorflow(messy: Path) -> None:
    code = (
        "import sys; from click.testing import CliRunner; from skuai.cli import cli; "
        f"r = CliRunner().invoke(cli, ['data', 'check', {str(messy)!r}]); "
        "print(r.exit_code, 'tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["1", "False"], result.stderr


def test_copies_group_and_distinct_photos_of_a_sku_do_not(tmp_path: Path) -> None:
    """The hash and threshold on a synthetic catalog: distinct photos of one SKU (same shoe,
    same colours, other pose and light) stay apart; re-encoded and resized copies group."""
    from training.synth import synthesize

    data = tmp_path / "catalog"
    synthesize(data, models=2, skus_per_model=2, images_per_sku=25, size=64, seed=7)
    report = check_dataset(data, input_size=64)
    assert report.duplicate_groups() == ([], [])  # 100 distinct photos, no false groups
    originals = sorted(data.rglob("*.png"))[::10]
    copies = tmp_path / "copies" / "m" / "s"
    copies.mkdir(parents=True)
    variants = {
        "q30.jpg": lambda im: encode(im, "JPEG", quality=30),
        "q95.jpg": lambda im: encode(im, "JPEG", quality=95),
        "a.webp": lambda im: encode(im, "WEBP"),
        "half.png": lambda im: encode(im.resize((32, 32), Image.Resampling.LANCZOS), "PNG"),
        "twice.png": lambda im: encode(im.resize((128, 128), Image.Resampling.LANCZOS), "PNG"),
    }
    for number, path in enumerate(originals):
        image = Image.open(path).convert("RGB")
        shutil.copy(path, copies / f"{number}.png")
        for name, make in variants.items():
            (copies / f"{number}-{name}").write_bytes(make(image))
    _, near = check_dataset(copies.parent.parent, input_size=32).duplicate_groups()
    expected = [
        frozenset(f"m/s/{n}{suffix}" for suffix in (".png", *(f"-{v}" for v in variants)))
        for n in range(len(originals))
    ]
    assert _groups(near) == sorted(expected, key=sorted)


def test_train_refuses_a_dataset_with_errors(messy: Path, tmp_path: Path) -> None:
    result = run_skuai("train", str(messy), "--registry", str(tmp_path / "reg"), *TINY_TRAIN)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"error: {messy} has 5 errors (run `skuai data check {messy}` for the list): fix them, "
        "or pass --force to train without the unusable files"
    )
    assert "data check: 45 usable images of 48 files" in result.stderr  # the summary came first
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "reg").exists() or not any((tmp_path / "reg").iterdir())


def test_train_with_force_records_a_split_without_leakage(messy: Path, tmp_path: Path) -> None:
    registry = tmp_path / "reg"
    result = CliRunner().invoke(
        cli, ["train", str(messy), "--registry", str(registry), "--force", "--json", *TINY_TRAIN]
    )
    assert result.exit_code == 0, result.output
    version = json.loads(result.stdout)["version"]
    record = read_split(registry / version)
    rows = record["files"]
    assert {row["path"] for row in record["left_out"]} == NOT_IMAGES | UNREADABLE
    assert len(rows) == 45 and {row["split"] for row in rows} == {"train", "val", "test"}
    labels = json.loads((registry / version / "labels.json").read_text())
    assert "court-empty" not in labels["skus"]["court"]  # no usable image: left out
    parts_of_group: dict[int, set[str]] = {}
    for row in rows:
        parts_of_group.setdefault(row["group"], set()).add(row["split"])
    assert len(parts_of_group) == len(rows) - 5  # the five copies share their originals' groups
    assert all(len(parts) == 1 for parts in parts_of_group.values())
    assert leaks(record, "test") == [] and leaks(record, "val") == []
    held_out = recorded_samples(registry / version, messy, "test")  # what the demo sends
    assert sorted(s.path.relative_to(messy).as_posix() for s in held_out) == sorted(
        row["path"] for row in rows if row["split"] == "test"
    )
    assert held_out and all(s.path.is_file() for s in held_out)
    # The same verification without skuai's code: hashes and bytes straight from the files.
    hashes = {
        row["path"]: imagehash.phash(_pixels(messy / row["path"]), hash_size=16) for row in rows
    }
    train = [row for row in rows if row["split"] == "train"]
    for held in (row for row in rows if row["split"] != "train"):
        for seen in train:
            assert held["sha256"] != seen["sha256"]
            assert hashes[held["path"]] - hashes[seen["path"]] > NEAR_DISTANCE


def _pixels(path: Path) -> Image.Image:
    from shared.images import decode
    from training.dedup import HASH_INPUT

    return Image.fromarray(decode(path.read_bytes(), size=HASH_INPUT, max_pixels=10**8))


def test_close_pairs_match_a_brute_force_comparison() -> None:
    rng = random.Random(5)
    base = [f"{rng.getrandbits(256):064x}" for _ in range(300)]

    def flipped(value: str, bits: int) -> str:
        number = int(value, 16)
        for bit in rng.sample(range(256), bits):
            number ^= 1 << bit
        return f"{number:064x}"

    hashes = base + [flipped(base[i], rng.randrange(0, 40)) for i in range(0, 300, 3)]
    as_hash = [imagehash.hex_to_hash(h) for h in hashes]
    brute = {
        (a, b)
        for a in range(len(hashes))
        for b in range(a + 1, len(hashes))
        if as_hash[a] - as_hash[b] <= NEAR_DISTANCE
    }
    i, j, d = close_pairs(hashes, hashes, triangle=True)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == brute and len(brute) > 50
    assert all(as_hash[a] - as_hash[b] == c for a, b, c in zip(i, j, d, strict=True))
    groups = near_groups(hashes)
    assert all(groups[a] == groups[b] for a, b in brute)
    assert len(set(groups)) == len(hashes) - len(brute)  # planted copies: one pair per group


def test_train_summary_with_force_lists_the_files_left_out(
    messy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from skuai.cli_data import print_summary

    print_summary(check_dataset(messy, input_size=64), force=True)
    err = capsys.readouterr().err
    assert "--force: training without these 3 files:" in err
    assert all(f"  {path}: " in err for path in NOT_IMAGES | UNREADABLE)
    assert "error SKU court/court-empty has no usable image" in err
