"""A procedurally drawn sneaker catalog in the dataset layout `OUT/<model>/<sku>/*.png`.

Models differ by silhouette (so grayscale is enough to tell them apart); SKUs are colourways, and
every colourway recurs in at least two models, so neither shape nor colour alone gives the SKU.
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from training.sneaker_drawing import (
    COLLARS,
    HEELS,
    LOGOS,
    SOLES,
    TOES,
    Colourway,
    Pose,
    SneakerModel,
    draw_sneaker,
    geometry,
)

CATALOG_FILE = "catalog.json"
CATALOG_KIND = "skuai-synthetic-catalog"
SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
MIN_SIZE, MAX_SIZE = 16, 1024
SUPERSAMPLE = 2  # draw at twice the size and box-filter down: cheap anti-aliasing
CHUNK_IMAGES = 25  # images per unit of work, so progress moves and workers share evenly

# Hues far apart, and dark/light pairs far enough apart that lighting changes cannot swap them.
PALETTE: dict[str, tuple[int, int, int]] = {
    "white": (242, 242, 238),
    "black": (26, 26, 28),
    "grey": (128, 130, 134),
    "crimson": (198, 22, 46),
    "orange": (242, 122, 20),
    "gold": (246, 200, 32),
    "lime": (150, 212, 48),
    "green": (24, 118, 58),
    "teal": (16, 150, 150),
    "sky": (110, 182, 238),
    "royal": (34, 72, 202),
    "navy": (26, 38, 112),
    "purple": (122, 48, 172),
    "pink": (242, 132, 184),
    "brown": (112, 68, 36),
    "tan": (212, 176, 124),
}
# One Latin square over (upper, sole) minus the cells whose accent equals the upper: any two
# colourways then differ in at least two of upper, sole and accent.
MAX_SKUS_PER_MODEL = len(PALETTE) * (len(PALETTE) - 1)

NAME_FIRST = (
    "aero apex blaze cloud court drift echo flux nova pulse retro storm street terra volt zoom"
)
NAME_SECOND = "runner classic racer trainer glide dunk force strider sprint rise surge max"

# How much each shape choice matters to the eye; models are spread out under this distance.
SHAPE_AXES: tuple[tuple[str, tuple, float], ...] = (
    ("collar", COLLARS, 3.0),
    ("sole", SOLES, 2.5),
    ("toe", TOES, 2.0),
    ("heel", HEELS, 1.5),
    ("logo", LOGOS, 1.5),
    ("toe_cap", (False, True), 1.0),
    ("panels", (0, 1, 2, 3), 1.0),
    ("laces", (3, 4, 5, 6), 0.5),
)
SOLE_HEIGHT = {"flat": 0.055, "chunky": 0.15, "rocker": 0.1, "tread": 0.08, "cupsole": 0.09}
COLLAR_HEIGHT = {"low": 0.3, "mid": 0.4, "high": 0.56}
TOE_HEIGHT = {"round": 0.2, "pointed": 0.16, "square": 0.23}

# Stream tags keep the random streams of different purposes apart for the same seed.
_NAMES, _SHAPES, _JITTER, _COLOURS, _IMAGES = range(5)


@dataclass(frozen=True)
class Sku:
    """One colourway of one model; `label` is globally unique and a valid folder name."""

    label: str
    model: str
    colourway: Colourway


@dataclass(frozen=True)
class Catalog:
    """The planned models and SKUs, in generation order."""

    models: tuple[SneakerModel, ...]
    skus: tuple[Sku, ...]

    def skus_of(self, model: str) -> tuple[Sku, ...]:
        """The SKUs of one model, in order."""
        return tuple(sku for sku in self.skus if sku.model == model)


# ----------------------------------------------------------------------------- planning


def _rng(seed: int, *path: int) -> np.random.Generator:
    return np.random.default_rng([seed, *path])


def _model_names(count: int, seed: int) -> list[str]:
    pairs = [f"{a}-{b}" for a, b in itertools.product(NAME_FIRST.split(), NAME_SECOND.split())]
    order = _rng(seed, _NAMES).permutation(len(pairs))
    # Past the word lists, names repeat with a numeric suffix: "aero-runner-2".
    return [
        pairs[order[i % len(pairs)]] + (f"-{i // len(pairs) + 1}" if i >= len(pairs) else "")
        for i in range(count)
    ]


def _shape_choices(count: int, seed: int) -> list[tuple[int, ...]]:
    """Greedy farthest-point picks in the space of shape choices, so models differ clearly."""
    grid = np.array(list(itertools.product(*(range(len(values)) for _, values, _ in SHAPE_AXES))))
    grid = grid[_rng(seed, _SHAPES).permutation(len(grid))]  # the seed decides ties
    weights = np.array([weight for _, _, weight in SHAPE_AXES])
    nearest = np.full(len(grid), np.inf)
    picks = []
    for _ in range(count):
        pick = grid[int(np.argmax(nearest))]
        picks.append(tuple(int(v) for v in pick))
        nearest = np.minimum(nearest, ((grid != pick) * weights).sum(axis=1))
    return picks


def _sneaker_model(name: str, choice: tuple[int, ...], seed: int, index: int) -> SneakerModel:
    params = {axis: values[i] for (axis, values, _), i in zip(SHAPE_AXES, choice, strict=True)}
    # Small continuous jitter so two models never share exact proportions.
    jitter = _rng(seed, _JITTER, index).uniform(0.93, 1.07, size=3)
    return SneakerModel(
        name=name,
        **params,
        sole_height=round(SOLE_HEIGHT[params["sole"]] * float(jitter[0]), 4),
        collar_height=round(COLLAR_HEIGHT[params["collar"]] * float(jitter[1]), 4),
        toe_height=round(TOE_HEIGHT[params["toe"]] * float(jitter[2]), 4),
        toe_spring=0.09 if params["sole"] == "rocker" else 0.03,
    )


def _colourway_pool(seed: int) -> list[Colourway]:
    """Every colourway the palette allows, pairwise differing in two of upper, sole, accent."""
    rng = _rng(seed, _COLOURS)
    names = list(PALETTE)
    n = len(names)
    rows, cols, cells = rng.permutation(n), rng.permutation(n), rng.permutation(n)
    pool = []
    for u, s in itertools.product(range(n), range(n)):
        a = int(cells[(rows[u] + cols[s]) % n])
        if a == u:
            continue
        lace_choices = [i for i in range(n) if i != u]
        laces = lace_choices[int(rng.integers(len(lace_choices)))]
        pool.append(
            Colourway(
                name=f"{names[u]}-{names[s]}-{names[a]}",
                upper=PALETTE[names[u]],
                sole=PALETTE[names[s]],
                accent=PALETTE[names[a]],
                laces=PALETTE[names[laces]],
            )
        )
    return [pool[i] for i in rng.permutation(len(pool))]


def plan_catalog(*, models: int, skus_per_model: int, seed: int) -> Catalog:
    """Choose the models' shapes and the SKUs' colourways, deterministically from the seed."""
    _check_plan(models, skus_per_model, seed)
    names = _model_names(models, seed)
    choices = _shape_choices(models, seed)
    sneaker_models = tuple(_sneaker_model(names[i], choices[i], seed, i) for i in range(models))
    # Each model takes a run of the shared pool; sized so each colourway is taken at least twice.
    pool = _colourway_pool(seed)[
        : max(skus_per_model, min(MAX_SKUS_PER_MODEL, models * skus_per_model // 2))
    ]
    skus = tuple(
        Sku(label=f"{model.name}--{colourway.name}", model=model.name, colourway=colourway)
        for m, model in enumerate(sneaker_models)
        for colourway in (pool[(m * skus_per_model + j) % len(pool)] for j in range(skus_per_model))
    )
    return Catalog(models=sneaker_models, skus=skus)


def _check_plan(models: int, skus_per_model: int, seed: int) -> None:
    _check_int("models", models, 1)
    _check_int("skus_per_model", skus_per_model, 1)
    _check_int("seed", seed, 0)
    if skus_per_model > MAX_SKUS_PER_MODEL:
        raise ValueError(
            f"skus_per_model must be at most {MAX_SKUS_PER_MODEL} (the number of "
            f"distinguishable colourways), got {skus_per_model}"
        )


def _check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be {bounds}, got {value}")


# ----------------------------------------------------------------------------- one photo


def render_sneaker(
    model: SneakerModel, colourway: Colourway, *, size: int, rng: np.random.Generator
) -> Image.Image:
    """One varied RGB photo of the sneaker: pose, background, shadow, lighting and sensor noise."""
    canvas = int(size) * SUPERSAMPLE
    pose = _random_pose(geometry(model).bounds, canvas, rng)
    image = _background(canvas, rng)
    _cast_shadow(image, pose, rng)
    draw_sneaker(ImageDraw.Draw(image), model, colourway, pose)
    return _relight(image.reduce(SUPERSAMPLE), rng)


def _random_pose(bounds: tuple[float, ...], canvas: int, rng: np.random.Generator) -> Pose:
    x0, y0, x1, y1 = bounds
    scale = canvas * rng.uniform(0.62, 0.85) / (x1 - x0)
    angle = math.radians(rng.uniform(-6.0, 6.0))
    # The rotated bounding box's half extents, so the whole shoe stays in the frame.
    w, h = (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    cos, sin = abs(math.cos(angle)), abs(math.sin(angle))
    half = np.array([w * cos + h * sin, w * sin + h * cos])
    slack = np.maximum(canvas / 2 - half - 0.02 * canvas, 0.0)
    centre = canvas / 2 + rng.uniform(-slack, slack)
    return Pose(
        scale=scale,
        angle=angle,
        centre=(float(centre[0]), float(centre[1])),
        anchor=((x0 + x1) / 2, (y0 + y1) / 2),
    )


def _soft_colour(rng: np.random.Generator) -> np.ndarray:
    """A light, weakly saturated backdrop colour, so the shoe's colours stay the loudest."""
    grey = rng.uniform(135, 250)
    tint = rng.normal(0, 12, size=3)
    return np.clip(grey + tint, 0, 255)


def _background(canvas: int, rng: np.random.Generator) -> Image.Image:
    kind = rng.choice(3, p=[0.35, 0.35, 0.3])
    first = _soft_colour(rng)
    if kind == 0:
        return Image.new("RGB", (canvas, canvas), tuple(int(c) for c in first))
    ramp = np.linspace(-1.0, 1.0, canvas, dtype=np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    t = (np.cos(theta) * ramp[None, :] + np.sin(theta) * ramp[:, None] + 1.4) / 2.8
    second = _soft_colour(rng) if kind == 1 else first
    pixels = first + t[..., None] * (second - first)
    if kind == 2:  # blotchy texture: coarse noise blown up to the canvas
        grain = rng.normal(0, 9, size=(6, 6, 1)).astype(np.float32)
        pixels = (
            pixels
            + np.asarray(
                Image.fromarray(grain[..., 0]).resize((canvas, canvas), Image.Resampling.BILINEAR)
            )[..., None]
        )
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if kind == 2:
        _clutter(image, rng)
    return image


def _clutter(image: Image.Image, rng: np.random.Generator) -> None:
    """A few faint shapes in the backdrop: the classifier must not rely on a clean surround."""
    draw = ImageDraw.Draw(image)
    canvas = image.width
    for _ in range(int(rng.integers(2, 7))):
        x0, y0 = rng.uniform(-0.2, 1.0, size=2) * canvas
        x1, y1 = x0 + rng.uniform(0.1, 0.5) * canvas, y0 + rng.uniform(0.05, 0.4) * canvas
        colour = tuple(int(c) for c in _soft_colour(rng))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), outline=colour, width=max(1, canvas // 60))
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)


def _cast_shadow(image: Image.Image, pose: Pose, rng: np.random.Generator) -> None:
    mask = Image.new("L", image.size, 0)
    cx, cy = pose.to_px(np.array([[0.5, -0.01]]))[0]
    rx, ry = 0.56 * pose.scale, rng.uniform(0.03, 0.07) * pose.scale
    ImageDraw.Draw(mask).ellipse(
        (cx - rx, cy - ry, cx + rx, cy + ry), fill=int(rng.uniform(60, 150))
    )
    mask = mask.filter(ImageFilter.BoxBlur(max(1, int(0.04 * pose.scale))))
    image.paste((30, 30, 30), mask=mask)


def _relight(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Brightness, contrast, a soft light gradient and noise; no hue shifts that swap colours."""
    pixels = np.asarray(image, dtype=np.float32)
    size = image.width
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    tilt = np.cos(theta) * ramp[None, :] + np.sin(theta) * ramp[:, None]
    field = 1 + rng.uniform(0, 0.12) * tilt
    pixels = pixels * field[..., None]
    mean = pixels.mean()
    pixels = (pixels - mean) * rng.uniform(0.85, 1.15) + mean
    pixels = pixels * rng.uniform(0.9, 1.1) * rng.uniform(0.97, 1.03, size=3)
    pixels = pixels + rng.normal(0, rng.uniform(0.5, 5.0), size=pixels.shape)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


# ----------------------------------------------------------------------------- writing


def synthesize(
    out: Path,
    *,
    models: int,
    skus_per_model: int,
    images_per_sku: int,
    size: int,
    seed: int,
    image_format: str = "png",
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> Catalog:
    """Write the catalog under OUT; calls progress(n_images_just_written) as it goes."""
    out = Path(out)
    _check_render(images_per_sku, size, image_format, workers)
    catalog = plan_catalog(models=models, skus_per_model=skus_per_model, seed=seed)
    _prepare_out(out)
    # Plain ints, so numpy integers from a caller still serialise to JSON.
    settings = {
        "seed": int(seed),
        "size": int(size),
        "images_per_sku": int(images_per_sku),
        "image_format": image_format,
    }
    # Written first and marked incomplete, so a rerun recognises (and replaces) a broken run.
    _write_catalog(out, catalog, settings, complete=False)
    jobs = list(_jobs(out, catalog, settings))
    for sku in catalog.skus:
        (out / sku.model / sku.label).mkdir(parents=True, exist_ok=True)
    for written in _run(jobs, workers):
        if progress is not None:
            progress(written)
    _write_catalog(out, catalog, settings, complete=True)
    return catalog


def _check_render(images_per_sku: int, size: int, image_format: str, workers: int) -> None:
    _check_int("images_per_sku", images_per_sku, 1)
    _check_int("size", size, MIN_SIZE, MAX_SIZE)
    _check_int("workers", workers, 1)
    if image_format not in IMAGE_FORMATS:
        raise ValueError(
            f"image_format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}"
        )


def _prepare_out(out: Path) -> None:
    """Refuse to write into anything but an empty folder or a catalog this module wrote."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return
    previous = _read_document(out)
    if previous is None:
        raise ValueError(
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


def _jobs(out: Path, catalog: Catalog, settings: dict) -> Iterator[tuple]:
    index = {model.name: m for m, model in enumerate(catalog.models)}
    sku_index: dict[str, int] = {}
    for sku in catalog.skus:
        m = index[sku.model]
        s = sku_index[sku.model] = sku_index.get(sku.model, -1) + 1
        model = catalog.models[m]
        for start in range(0, settings["images_per_sku"], CHUNK_IMAGES):
            stop = min(start + CHUNK_IMAGES, settings["images_per_sku"])
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
    for i in range(start, stop):
        rng = _rng(settings["seed"], _IMAGES, m, s, i)
        image = render_sneaker(model, colourway, size=settings["size"], rng=rng)
        image.save(folder / f"{i:0{digits}d}.{fmt}", IMAGE_FORMATS[fmt], **_SAVE_OPTIONS[fmt])
    return stop - start


_SAVE_OPTIONS: dict[str, dict] = {
    "png": {"compress_level": 6},
    "jpg": {"quality": 92},
    "webp": {"quality": 90, "method": 4},
}


def _write_catalog(out: Path, catalog: Catalog, settings: dict, *, complete: bool) -> None:
    document = {
        "kind": CATALOG_KIND,
        "version": 1,
        "complete": complete,
        **settings,
        "models": [asdict(model) for model in catalog.models],
        "skus": [_sku_entry(sku) for sku in catalog.skus],
    }
    (out / CATALOG_FILE).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


def _sku_entry(sku: Sku) -> dict:
    parts = ("upper", "sole", "accent", "laces")
    colours = {part: list(getattr(sku.colourway, part)) for part in parts}
    return {
        "label": sku.label,
        "model": sku.model,
        "colourway": sku.colourway.name,
        "colours": colours,
    }


def load_catalog(out: Path) -> Catalog:
    """Read back the catalog that `synthesize` described in OUT/catalog.json."""
    document = _read_document(Path(out))
    if document is None:
        raise ValueError(f"{out} holds no synthetic catalog ({CATALOG_FILE})")
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
