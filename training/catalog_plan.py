"""Planning a synthetic catalog: distinct model shapes, and colourways shared between models.

Models differ by silhouette (so grayscale is enough to tell them apart); SKUs are colourways, and
colourways recur across models, so neither shape nor colour alone gives the SKU. Models may have
the same number of SKUs, or numbers spread over a range (an uneven catalog, like a real one).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from shared.errors import InvalidArgument
from training.colourways import MAX_SKUS_PER_MODEL, Colourway, colourway_pool
from training.sneaker_geometry import COLLARS, HEELS, LOGOS, SOLES, TOES, SneakerModel

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
_NAMES, _SHAPES, _JITTER, _COLOURS, _IMAGES, _SKU_COUNTS = range(6)

SkusPerModel = int | tuple[int, int]  # one count for every model, or an inclusive (min, max)


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


def plan_catalog(*, models: int, skus_per_model: SkusPerModel, seed: int) -> Catalog:
    """Choose the models' shapes and the SKUs' colourways, deterministically from the seed."""
    counts = sku_counts(models, skus_per_model, seed)
    names = _model_names(models, seed)
    choices = _shape_choices(models, seed)
    sneaker_models = tuple(_sneaker_model(names[i], choices[i], seed, i) for i in range(models))
    skus = _share_colourways(sneaker_models, counts, seed)
    return Catalog(models=sneaker_models, skus=skus)


def sku_counts(models: int, skus_per_model: SkusPerModel, seed: int) -> list[int]:
    """SKUs of each model: all the same, or for (min, max) a geometric spread from max down to
    min (few models with many colourways, many with few, as in real catalogs), in an order
    chosen by the seed. Both ends of the range occur whenever there are two models or more."""
    low, high = _check_plan(models, skus_per_model, seed)
    if low == high or models == 1:
        return [high] * models
    ranks = _rng(seed, _SKU_COUNTS).permutation(models)
    return [round(high * (low / high) ** (r / (models - 1))) for r in ranks]


def image_rng(
    seed: int, model_index: int, sku_index: int, image_index: int, profile: int = 0
) -> np.random.Generator:
    """The random stream of one image, apart from every other image's and from the plan's.
    `profile` > 0 (a non-standard variation profile) gives that profile photos of its own, not
    the standard photos' poses and backdrops drawn harder, so they can test a model trained on
    standard photos of the same catalog."""
    extra = (profile,) if profile else ()
    return _rng(seed, _IMAGES, model_index, sku_index, image_index, *extra)


def check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    """Raise ValueError unless `value` is an integer (not a bool) within the bounds."""
    if not isinstance(value, int | np.integer) or isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise InvalidArgument(f"{name} must be {bounds}, got {value}")


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


def _share_colourways(
    sneaker_models: tuple[SneakerModel, ...], counts: list[int], seed: int
) -> tuple[Sku, ...]:
    """Each model takes the next run of one shared pool, sized so that (with equal counts) each
    colourway is taken twice or more; a run never wraps onto itself, so a model's SKUs differ."""
    taken = sum(counts)
    pool = colourway_pool(_rng(seed, _COLOURS))[
        : max(max(counts), min(MAX_SKUS_PER_MODEL, taken // 2))
    ]
    starts = np.cumsum([0, *counts[:-1]])
    return tuple(
        Sku(label=f"{model.name}--{colourway.name}", model=model.name, colourway=colourway)
        for model, start, count in zip(sneaker_models, starts, counts, strict=True)
        for colourway in (pool[(int(start) + j) % len(pool)] for j in range(count))
    )


def _check_plan(models: int, skus_per_model: SkusPerModel, seed: int) -> tuple[int, int]:
    """Validate the plan's arguments; returns the (min, max) SKUs per model."""
    check_int("models", models, 1)
    check_int("seed", seed, 0)
    if isinstance(skus_per_model, tuple):
        if len(skus_per_model) != 2:
            raise InvalidArgument(f"skus_per_model must be N or (MIN, MAX), got {skus_per_model!r}")
        low, high = skus_per_model
    else:
        low = high = skus_per_model
    for value in (low, high):
        check_int("skus_per_model", value, 1)
        if value > MAX_SKUS_PER_MODEL:
            raise InvalidArgument(
                f"skus_per_model must be at most {MAX_SKUS_PER_MODEL} (the number of "
                f"distinguishable colourways), got {value}"
            )
    if low > high:
        raise InvalidArgument(f"skus_per_model: MIN must not exceed MAX, got {low}-{high}")
    return low, high
