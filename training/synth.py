"""A procedurally drawn sneaker catalog in the dataset layout `OUT/<model>/<sku>/*.png`.

The public entry point: `plan_catalog` decides the models and SKUs (training.catalog_plan),
`render_sneaker` makes one photo (training.sneaker_photo), and this module writes them all, with
a catalog.json that `load_catalog` reads back.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from shared.errors import InvalidArgument
from training.catalog_plan import (
    Catalog,
    Sku,
    SkusPerModel,
    check_int,
    image_rng,
    plan_catalog,
    sku_counts,
)
from training.colourways import MAX_SKUS_PER_MODEL, PALETTE, Colourway
from training.sneaker_geometry import SneakerModel
from training.sneaker_photo import VARIATIONS, render_sneaker

__all__ = [
    "IMAGE_FORMATS",
    "MAX_SKUS_PER_MODEL",
    "PALETTE",
    "VARIATIONS",
    "Catalog",
    "Colourway",
    "Sku",
    "SkusPerModel",
    "SneakerModel",
    "image_counts",
    "load_catalog",
    "plan_catalog",
    "render_sneaker",
    "sku_counts",
    "synthesize",
]

CATALOG_FILE = "catalog.json"
CATALOG_KIND = "skuai-synthetic-catalog"
SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
MIN_SIZE, MAX_SIZE = 16, 1024
CHUNK_IMAGES = 25  # images per unit of work, so progress moves and workers share evenly
MAX_IMBALANCE = 1000
IMBALANCE_STREAM = 9001  # keeps the imbalance order's random stream apart from the plan's


def synthesize(
    out: Path,
    *,
    models: int,
    skus_per_model: SkusPerModel,
    images_per_sku: int,
    size: int,
    seed: int,
    image_format: str = "png",
    variation: str = "standard",
    imbalance: float = 1.0,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> Catalog:
    """Write the catalog under OUT; calls progress(n_images_just_written) as it goes.

    `skus_per_model` (MIN, MAX) gives models SKU counts spread over that range (see
    `sku_counts`); `imbalance` R > 1 gives the SKUs image counts spread geometrically from
    `images_per_sku` down to `images_per_sku / R` (at least 1), in an order chosen by the seed;
    `variation` names a
    profile of `VARIATIONS` ("hard" for photos harder than any a model was trained on)."""
    out = Path(out)
    _check_render(images_per_sku, size, image_format, workers, variation, imbalance)
    catalog = plan_catalog(models=models, skus_per_model=skus_per_model, seed=seed)
    _prepare_out(out)
    counts = image_counts(len(catalog.skus), images_per_sku, imbalance, seed)
    # Plain ints, so numpy integers from a caller still serialise to JSON.
    settings = {
        "seed": int(seed),
        "size": int(size),
        "images_per_sku": int(images_per_sku),
        "image_format": image_format,
        "variation": variation,
        "imbalance": float(imbalance),
        "skus_per_model": [int(v) for v in skus_per_model]
        if isinstance(skus_per_model, tuple)
        else int(skus_per_model),
    }
    # Written first and marked incomplete, so a rerun recognises (and replaces) a broken run.
    _write_catalog(out, catalog, settings, counts, complete=False)
    jobs = list(_jobs(out, catalog, settings, counts))
    for sku in catalog.skus:
        (out / sku.model / sku.label).mkdir(parents=True, exist_ok=True)
    for written in _run(jobs, workers):
        if progress is not None:
            progress(written)
    _write_catalog(out, catalog, settings, counts, complete=True)
    return catalog


def image_counts(skus: int, images_per_sku: int, imbalance: float, seed: int) -> list[int]:
    """Images of each SKU: all `images_per_sku`, or a geometric spread down to 1/imbalance."""
    if imbalance == 1 or skus == 1:
        return [images_per_sku] * skus
    ranks = np.random.default_rng([seed, IMBALANCE_STREAM]).permutation(skus)
    return [max(1, round(images_per_sku * imbalance ** (-r / (skus - 1)))) for r in ranks]


def _check_render(
    images_per_sku: int,
    size: int,
    image_format: str,
    workers: int,
    variation: str,
    imbalance: float,
) -> None:
    check_int("images_per_sku", images_per_sku, 1)
    check_int("size", size, MIN_SIZE, MAX_SIZE)
    check_int("workers", workers, 1)
    if image_format not in IMAGE_FORMATS:
        raise InvalidArgument(
            f"image_format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}"
        )
    if variation not in VARIATIONS:
        raise InvalidArgument(
            f"variation must be one of {', '.join(VARIATIONS)}, got {variation!r}"
        )
    if not isinstance(imbalance, int | float) or not 1 <= imbalance <= MAX_IMBALANCE:
        raise InvalidArgument(f"imbalance must be between 1 and {MAX_IMBALANCE}, got {imbalance!r}")


def _prepare_out(out: Path) -> None:
    """Refuse to write into anything but an empty folder or a catalog this module wrote."""
    if out.exists() and not out.is_dir():
        raise InvalidArgument(f"{out} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return
    previous = _read_document(out)
    if previous is None:
        raise InvalidArgument(
            f"{out} is not empty and holds no previous synthetic catalog; "
            "choose an empty or new folder"
        )
    for model in previous.get("models", []):
        name = str(model.get("name", "")) if isinstance(model, dict) else ""
        folder = out / name
        # Only plain slugs we could have written: a tampered catalog must not reach outside OUT.
        if SLUG.fullmatch(name) and folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
    (out / CATALOG_FILE).unlink()


def _read_document(out: Path) -> dict | None:
    try:
        document = json.loads((out / CATALOG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) and document.get("kind") == CATALOG_KIND else None


def _jobs(out: Path, catalog: Catalog, settings: dict, counts: list[int]) -> Iterator[tuple]:
    index = {model.name: m for m, model in enumerate(catalog.models)}
    sku_index: dict[str, int] = {}
    for sku, count in zip(catalog.skus, counts, strict=True):
        m = index[sku.model]
        s = sku_index[sku.model] = sku_index.get(sku.model, -1) + 1
        model = catalog.models[m]
        for start in range(0, count, CHUNK_IMAGES):
            stop = min(start + CHUNK_IMAGES, count)
            yield (out / sku.model / sku.label, model, sku.colourway, (m, s, start, stop), settings)


def _run(jobs: list[tuple], workers: int) -> Iterator[int]:
    if workers == 1 or len(jobs) < 2:
        yield from map(_render_job, jobs)
        return
    # Each image's randomness comes from its own indices, so finishing order cannot change bytes.
    with multiprocessing.get_context().Pool(min(workers, len(jobs))) as pool:
        yield from pool.imap_unordered(_render_job, jobs)


def _render_job(job: tuple) -> int:
    folder, model, colourway, (m, s, start, stop), settings = job
    fmt = settings["image_format"]
    digits = max(4, len(str(settings["images_per_sku"] - 1)))
    profile = list(VARIATIONS).index(settings["variation"])  # 0: standard
    for i in range(start, stop):
        rng = image_rng(settings["seed"], m, s, i, profile)
        image = render_sneaker(
            model,
            colourway,
            size=settings["size"],
            rng=rng,
            variation=VARIATIONS[settings["variation"]],
        )
        image.save(folder / f"{i:0{digits}d}.{fmt}", IMAGE_FORMATS[fmt], **_SAVE_OPTIONS[fmt])
    return stop - start


_SAVE_OPTIONS: dict[str, dict] = {
    "png": {"compress_level": 1},  # noisy photos barely compress; level 6 is 3x slower
    "jpg": {"quality": 92},
    "webp": {"quality": 90, "method": 4},
}


def _write_catalog(
    out: Path, catalog: Catalog, settings: dict, counts: list[int], *, complete: bool
) -> None:
    document = {
        "kind": CATALOG_KIND,
        "version": 1,
        "complete": complete,
        **settings,
        "models": [asdict(model) for model in catalog.models],
        "skus": [_sku_entry(sku, n) for sku, n in zip(catalog.skus, counts, strict=True)],
    }
    (out / CATALOG_FILE).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


def _sku_entry(sku: Sku, images: int) -> dict:
    parts = ("upper", "sole", "accent", "laces")
    colours = {part: list(getattr(sku.colourway, part)) for part in parts}
    return {
        "label": sku.label,
        "model": sku.model,
        "colourway": sku.colourway.name,
        "colours": colours,
        "images": int(images),
    }


def load_catalog(out: Path) -> Catalog:
    """Read back the catalog that `synthesize` described in OUT/catalog.json."""
    document = _read_document(Path(out))
    if document is None:
        raise InvalidArgument(f"{out} holds no synthetic catalog ({CATALOG_FILE})")
    model_fields = {f.name for f in fields(SneakerModel)}
    models = tuple(
        SneakerModel(**{k: v for k, v in m.items() if k in model_fields})
        for m in document["models"]
    )
    skus = tuple(
        Sku(
            label=s["label"],
            model=s["model"],
            colourway=Colourway(
                name=s["colourway"], **{part: tuple(rgb) for part, rgb in s["colours"].items()}
            ),
        )
        for s in document["skus"]
    )
    return Catalog(models=models, skus=skus)
