"""The synthetic sneaker catalog: layout, determinism, shared colourways, shapes, validation."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from training.catalog_plan import image_rng
from training.dataset import scan
from training.sneaker_drawing import Pose, SneakerModel, draw_sneaker, silhouette
from training.synth import (
    MAX_SKUS_PER_MODEL,
    PALETTE,
    VARIATIONS,
    Catalog,
    Colourway,
    image_counts,
    load_catalog,
    plan_catalog,
    render_sneaker,
    sku_counts,
    synthesize,
)

SMALL = {"models": 3, "skus_per_model": 4, "images_per_sku": 3, "size": 32, "seed": 7}
SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
SmallCatalog = tuple[Path, Catalog, list[int]]


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory: pytest.TempPathFactory) -> SmallCatalog:
    out = tmp_path_factory.mktemp("synth") / "catalog"
    reported: list[int] = []
    catalog = synthesize(out, **SMALL, progress=reported.append)
    return out, catalog, reported


def test_layout_has_every_sku_under_its_model(small_catalog: SmallCatalog) -> None:
    out, catalog, reported = small_catalog
    model_dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert model_dirs == sorted(m.name for m in catalog.models)
    assert len(catalog.models) == SMALL["models"]
    for model in catalog.models:
        sku_dirs = sorted(p.name for p in (out / model.name).iterdir())
        assert sku_dirs == sorted(s.label for s in catalog.skus_of(model.name))
        assert len(sku_dirs) == SMALL["skus_per_model"]
        for sku_dir in sku_dirs:
            images = sorted((out / model.name / sku_dir).iterdir())
            assert [p.name for p in images] == ["0000.png", "0001.png", "0002.png"]
    assert sum(reported) == SMALL["models"] * SMALL["skus_per_model"] * SMALL["images_per_sku"]


def test_images_are_rgb_at_the_requested_size(small_catalog: SmallCatalog) -> None:
    out, _, _ = small_catalog
    with Image.open(next(out.rglob("*.png"))) as image:
        assert image.format == "PNG"
        assert image.mode == "RGB"
        assert image.size == (SMALL["size"], SMALL["size"])


def test_catalog_json_matches_the_tree(small_catalog: SmallCatalog) -> None:
    out, catalog, _ = small_catalog
    document = json.loads((out / "catalog.json").read_text())
    assert document["complete"] is True
    assert document["seed"] == SMALL["seed"]
    assert [m["name"] for m in document["models"]] == [m.name for m in catalog.models]
    for sku in document["skus"]:
        assert (out / sku["model"] / sku["label"]).is_dir()
        assert sku["label"] == f"{sku['model']}--{sku['colourway']}"
        assert set(sku["colours"]) == {"upper", "sole", "accent", "laces"}
    on_disk = {(p.parent.name, p.name) for p in out.glob("*/*") if p.is_dir()}
    assert on_disk == {(s["model"], s["label"]) for s in document["skus"]}
    assert load_catalog(out) == catalog


def test_the_dataset_scanner_reads_the_tree(small_catalog: SmallCatalog) -> None:
    out, catalog, _ = small_catalog
    labels, samples = scan(out)
    assert set(labels.models) == {m.name for m in catalog.models}
    assert set(labels.skus) == {s.label for s in catalog.skus}
    assert len(samples) == len(catalog.skus) * SMALL["images_per_sku"]


def test_same_seed_gives_identical_bytes_other_seed_differs(
    small_catalog: SmallCatalog, tmp_path: Path
) -> None:
    out, _, _ = small_catalog
    again = synthesize(tmp_path / "again", **SMALL)
    assert _digests(tmp_path / "again") == _digests(out)
    assert again == plan_catalog(models=3, skus_per_model=4, seed=7)
    synthesize(tmp_path / "other", **{**SMALL, "seed": 8})
    other = _digests(tmp_path / "other")
    assert set(other.values()).isdisjoint(v for k, v in _digests(out).items() if k.endswith(".png"))


def test_workers_and_reruns_do_not_change_bytes(
    small_catalog: SmallCatalog, tmp_path: Path
) -> None:
    out, _, _ = small_catalog
    synthesize(tmp_path / "pooled", **SMALL, workers=2)
    assert _digests(tmp_path / "pooled") == _digests(out)
    # A rerun over a previous catalog replaces it, even one with other models.
    synthesize(tmp_path / "pooled", **{**SMALL, "models": 4, "seed": 99})
    synthesize(tmp_path / "pooled", **SMALL)
    assert _digests(tmp_path / "pooled") == _digests(out)


@pytest.mark.parametrize("image_format", ["jpg", "webp"])
def test_other_image_formats(tmp_path: Path, image_format: str) -> None:
    synthesize(
        tmp_path / "out", **{**SMALL, "models": 2, "skus_per_model": 1}, image_format=image_format
    )
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and p.name != "catalog.json"]
    assert len(files) == 2 * 3
    assert all(p.suffix == f".{image_format}" for p in files)
    with Image.open(files[0]) as image:
        assert image.size == (32, 32)


@pytest.mark.parametrize(("models", "skus"), [(2, 1), (2, 42), (3, 5), (5, 7), (12, 42), (7, 240)])
def test_every_colourway_recurs_in_another_model(models: int, skus: int) -> None:
    catalog = plan_catalog(models=models, skus_per_model=skus, seed=1)
    owners: dict[str, set[str]] = {}
    for model in catalog.models:
        names = [sku.colourway.name for sku in catalog.skus_of(model.name)]
        assert len(names) == len(set(names)) == skus
        for name in names:
            owners.setdefault(name, set()).add(model.name)
    assert all(len(models_with) >= 2 for models_with in owners.values())


def test_colourways_are_far_apart_within_a_model() -> None:
    catalog = plan_catalog(models=12, skus_per_model=42, seed=3)
    for model in catalog.models:
        parts = [
            (s.colourway.upper, s.colourway.sole, s.colourway.accent)
            for s in catalog.skus_of(model.name)
        ]
        for a, b in itertools.combinations(parts, 2):
            assert sum(x != y for x, y in zip(a, b, strict=True)) >= 2
    colours = np.array(list(PALETTE.values()), dtype=float)
    gaps = [np.linalg.norm(a - b) for a, b in itertools.combinations(colours, 2)]
    assert min(gaps) > 60


def test_names_and_labels_are_unique_slugs() -> None:
    catalog = plan_catalog(models=200, skus_per_model=2, seed=5)
    names = [m.name for m in catalog.models]
    assert len(set(names)) == 200
    assert all(SLUG.match(name) for name in names)
    labels = [s.label for s in catalog.skus]
    assert len(set(labels)) == len(labels)
    assert all(SLUG.match(part) for label in labels for part in label.split("--"))


def test_plan_is_deterministic_and_prefix_stable() -> None:
    first = plan_catalog(models=12, skus_per_model=10, seed=11)
    assert first == plan_catalog(models=12, skus_per_model=10, seed=11)
    assert plan_catalog(models=5, skus_per_model=10, seed=11).models == first.models[:5]
    assert plan_catalog(models=12, skus_per_model=10, seed=12).models != first.models


def test_render_sneaker_is_deterministic_per_rng() -> None:
    catalog = plan_catalog(models=1, skus_per_model=1, seed=0)
    model, colourway = catalog.models[0], catalog.skus[0].colourway

    def render(seed: int) -> bytes:
        return render_sneaker(model, colourway, size=48, rng=np.random.default_rng(seed)).tobytes()

    assert render(1) == render(1)
    assert render(1) != render(2)


def _line_drawing(model: SneakerModel, size: int = 96) -> np.ndarray:
    """The model drawn all white in a fixed pose: only the shape and its seams show."""
    image = Image.new("RGB", (size, size))
    white = Colourway("white", (255,) * 3, (255,) * 3, (255,) * 3, (255,) * 3)
    pose = Pose(scale=0.85 * size, angle=0.0, centre=(size / 2, size / 2))  # as silhouette()
    draw_sneaker(ImageDraw.Draw(image), model, white, pose)
    return np.asarray(image.convert("L")) < 128


def test_models_differ_in_grayscale_shape() -> None:
    # Twelve models is the target scale; every pair must differ in outline or in the
    # colour-independent seams, logo and lace marks that grayscale stage 1 sees.
    models = plan_catalog(models=12, skus_per_model=1, seed=2).models
    masks = [np.asarray(silhouette(m, 96)) > 127 for m in models]
    drawings = [_line_drawing(m) & mask for m, mask in zip(models, masks, strict=True)]
    for i, j in itertools.combinations(range(len(models)), 2):
        outline_change = (masks[i] ^ masks[j]).sum() / (masks[i] | masks[j]).sum()
        mark_change = (drawings[i] ^ drawings[j]).sum() / (drawings[i] | drawings[j]).sum()
        assert outline_change > 0.02 and mark_change > 0.4, (models[i].name, models[j].name)
    shapes = Counter((m.collar, m.sole, m.toe, m.heel) for m in models)
    assert max(shapes.values()) == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"models": 0}, "models must be"),
        ({"skus_per_model": 0}, "skus_per_model must be"),
        ({"skus_per_model": MAX_SKUS_PER_MODEL + 1}, "distinguishable colourways"),
        ({"images_per_sku": 0}, "images_per_sku must be"),
        ({"size": 15}, "size must be between 16 and 1024"),
        ({"size": 1025}, "size must be between 16 and 1024"),
        ({"size": 32.0}, "size must be an integer"),
        ({"seed": -1}, "seed must be"),
        ({"image_format": "gif"}, "image_format must be one of png, jpg, webp"),
        ({"workers": 0}, "workers must be"),
        ({"variation": "extreme"}, "variation must be one of standard, hard"),
        ({"imbalance": 0.5}, "imbalance must be between 1 and 1000"),
        ({"skus_per_model": (5, 2)}, "MIN must not exceed MAX"),
        ({"skus_per_model": (0, 4)}, "skus_per_model must be"),
        ({"skus_per_model": (1, MAX_SKUS_PER_MODEL + 1)}, "distinguishable colourways"),
        ({"skus_per_model": (1, 2, 3)}, "N or \\(MIN, MAX\\)"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synthesize(tmp_path / "out", **{**SMALL, **overrides})
    assert not (tmp_path / "out").exists()


def test_refuses_a_folder_that_is_not_a_catalog(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"not mine")
    with pytest.raises(ValueError, match="not empty"):
        synthesize(tmp_path / "photos", **SMALL)
    assert (tmp_path / "photos" / "holiday.jpg").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        synthesize(tmp_path / "file", **SMALL)


def test_never_deletes_outside_the_catalog(tmp_path: Path) -> None:
    out = tmp_path / "out"
    synthesize(out, **SMALL)
    (tmp_path / "keep").mkdir()
    document = json.loads((out / "catalog.json").read_text())
    document["models"].append({"name": "../keep"})
    (out / "catalog.json").write_text(json.dumps(document))
    synthesize(out, **SMALL)
    assert (tmp_path / "keep").is_dir()


def test_an_interrupted_run_is_replaced(tmp_path: Path) -> None:
    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        synthesize(out, **SMALL, progress=interrupt)
    assert json.loads((out / "catalog.json").read_text())["complete"] is False
    synthesize(out, **SMALL)
    assert json.loads((out / "catalog.json").read_text())["complete"] is True


def test_imbalance_spreads_image_counts_as_asked(tmp_path: Path) -> None:
    out = tmp_path / "imbalanced"
    catalog = synthesize(out, **{**SMALL, "images_per_sku": 20, "imbalance": 10})
    on_disk = {s.label: len(list((out / s.model / s.label).iterdir())) for s in catalog.skus}
    assert max(on_disk.values()) == 20 and min(on_disk.values()) == 2
    # A geometric spread from 20 down to 20/10, in an order the seed chooses.
    assert sorted(on_disk.values()) == sorted(round(20 * 10 ** (-r / 11)) for r in range(12))
    recorded = json.loads((out / "catalog.json").read_text())
    assert recorded["imbalance"] == 10
    assert {s["label"]: s["images"] for s in recorded["skus"]} == on_disk
    assert image_counts(12, 20, 10, SMALL["seed"]) == list(on_disk.values())
    assert image_counts(12, 20, 1, SMALL["seed"]) == [20] * 12


def test_hard_variation_is_harder_than_standard() -> None:
    catalog = plan_catalog(models=2, skus_per_model=2, seed=1)
    model, sku = catalog.models[0], catalog.skus[0]

    def spread(variation: str) -> float:
        """Mean pixel distance between renders of one SKU: more variation, larger spread."""
        images = [
            np.asarray(
                render_sneaker(
                    model,
                    sku.colourway,
                    size=48,
                    rng=np.random.default_rng(i),
                    variation=VARIATIONS[variation],
                ),
                dtype=np.float32,
            )
            for i in range(24)
        ]
        mean = np.mean(images, axis=0)
        return float(np.mean([np.abs(image - mean).mean() for image in images]))

    assert spread("hard") > spread("standard")
    first = render_sneaker(
        model, sku.colourway, size=48, rng=np.random.default_rng(0), variation=VARIATIONS["hard"]
    )
    again = render_sneaker(
        model, sku.colourway, size=48, rng=np.random.default_rng(0), variation=VARIATIONS["hard"]
    )
    assert first.tobytes() == again.tobytes()


def test_hard_photos_share_the_plan_but_not_the_draws(small_catalog: SmallCatalog, tmp_path: Path):
    """A hard catalog of the same seed tests a model trained on the standard one: the same
    models and colourways, but photos from their own random streams (not the standard photos'
    poses, backdrops and occluders drawn harder)."""
    _, standard, _ = small_catalog
    hard = synthesize(tmp_path / "hard", **{**SMALL, "variation": "hard"})
    assert [(s.label, s.colourway) for s in hard.skus] == [
        (s.label, s.colourway) for s in standard.skus
    ]
    seed = SMALL["seed"]
    assert (
        image_rng(seed, 1, 2, 0).random(8).tolist()
        != image_rng(seed, 1, 2, 0, 1).random(8).tolist()
    )
    # the standard stream is the one it always was: existing catalogs redraw byte for byte
    assert image_rng(seed, 1, 2, 0).random() == np.random.default_rng([seed, 4, 1, 2, 0]).random()


@pytest.mark.parametrize(
    ("models", "low", "high"), [(6, 1, 12), (10, 1, 40), (2, 3, 4), (25, 2, 9)]
)
def test_uneven_sku_counts_span_the_range(models: int, low: int, high: int) -> None:
    counts = sku_counts(models, (low, high), seed=4)
    assert len(counts) == models
    assert min(counts) == low and max(counts) == high
    assert counts == sku_counts(models, (low, high), seed=4)  # deterministic by seed
    # spread geometrically: as many models below the geometric mean as above it
    middle = (low * high) ** 0.5
    assert abs(sum(c < middle for c in counts) - sum(c > middle for c in counts)) <= 1
    assert sku_counts(models, (4, 4), seed=4) == sku_counts(models, 4, seed=4) == [4] * models


def test_the_seed_decides_which_models_get_many_skus() -> None:
    orders = {tuple(sku_counts(8, (1, 40), seed=seed)) for seed in range(6)}
    assert len(orders) > 1
    assert all(sorted(order) == sorted(next(iter(orders))) for order in orders)


def test_an_uneven_catalog_is_written_and_redrawn_identically(tmp_path: Path) -> None:
    uneven = {**SMALL, "models": 4, "skus_per_model": (1, 6), "images_per_sku": 6}
    catalog = synthesize(tmp_path / "a", **uneven, imbalance=6)
    per_model = Counter(s.model for s in catalog.skus)
    assert [per_model[m.name] for m in catalog.models] == sku_counts(4, (1, 6), SMALL["seed"])
    for model in catalog.models:
        names = [s.colourway.name for s in catalog.skus_of(model.name)]
        assert len(set(names)) == len(names)  # a model's colourways all differ
    labels, samples = scan(tmp_path / "a")
    assert {m: len(s) for m, s in labels.skus_by_model.items()} == dict(per_model)
    photos = Counter(s.sku for s in samples)
    assert max(photos.values()) == 6 and min(photos.values()) == 1
    recorded = json.loads((tmp_path / "a" / "catalog.json").read_text())
    assert recorded["skus_per_model"] == [1, 6]
    assert load_catalog(tmp_path / "a") == catalog
    synthesize(tmp_path / "b", **uneven, imbalance=6)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    # the first model's SKUs and photos are those of an even catalog with as many SKUs
    first = catalog.models[0].name
    even = plan_catalog(models=4, skus_per_model=per_model[first], seed=SMALL["seed"])
    assert even.skus_of(first) == catalog.skus_of(first)


def test_the_command_line_takes_a_range_of_skus_per_model(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from skuai.cli_training import synth

    runner = CliRunner()
    args = ["--models", "3", "--images-per-sku", "2", "--size", "32", "--workers", "1"]
    done = runner.invoke(synth, [str(tmp_path / "out"), *args, "--skus-per-model", "1-5"])
    assert done.exit_code == 0, done.output
    assert sorted(len(list(p.iterdir())) for p in (tmp_path / "out").iterdir() if p.is_dir()) == [
        1,
        2,
        5,
    ]
    bad = runner.invoke(synth, [str(tmp_path / "bad"), *args, "--skus-per-model", "one-5"])
    assert bad.exit_code == 2 and "is not N or MIN-MAX" in bad.output
