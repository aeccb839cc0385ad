"""`skuai synth --scraped`: a catalog that looks scraped, and the data check finds exactly the
mess that was made (every copy grouped with its original; the truncated and non-image files as
errors)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from shared.image_formats import register_plugins
from skuai.cli import cli
from training.data_check import check_dataset
from training.scraped import FORMAT_MIX

SYNTH = ["--models=3", "--skus-per-model=1-3", "--images-per-sku=14", "--size=96", "--workers=1"]


def _synth(out: Path, seed: int = 5) -> dict:
    done = CliRunner().invoke(cli, ["synth", str(out), *SYNTH, f"--seed={seed}", "--scraped"])
    assert done.exit_code == 0, done.output
    assert "made it look scraped" in done.output
    return json.loads((out / "scraped.json").read_text())


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_data_check_finds_exactly_the_mess_that_was_made(tmp_path: Path) -> None:
    mess = _synth(tmp_path / "scraped")
    assert len(mess["formats"]) >= 4 and sum(mess["formats"].values()) > 40
    assert mess["copies"], "some photos get copies"
    report = check_dataset(tmp_path / "scraped", input_size=32).to_dict()

    assert {p["path"] for p in report["unreadable"]} == {mess["truncated"]}
    assert {p["path"] for p in report["not_images"]} == {mess["not_an_image"]}
    groups = [set(g) for g in report["exact_duplicates"] + report["near_duplicates"]]
    for copy, (original, kind) in mess["copies"].items():
        assert any({copy, original} <= g for g in groups), f"{kind} copy {copy} not grouped"
    assert sum(len(g) for g in groups) == 2 * len(mess["copies"]), "no distinct photos grouped"
    model, sku = mess["single_photo_sku"].split("/")
    assert report["images_per_sku"][model][sku] == 1

    register_plugins()
    format_of = {suffix: fmt for fmt, suffix, _ in FORMAT_MIX}
    for path in (tmp_path / "scraped").glob("*/*/*"):
        if path.as_posix().endswith((mess["truncated"], mess["not_an_image"])):
            continue
        with Image.open(path) as image:  # content and suffix agree
            assert image.format == format_of[path.suffix], path


def test_scraped_catalogs_are_deterministic_by_seed(tmp_path: Path) -> None:
    _synth(tmp_path / "a", seed=2)
    _synth(tmp_path / "b", seed=2)
    _synth(tmp_path / "c", seed=3)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert _tree(tmp_path / "a") != _tree(tmp_path / "c")
