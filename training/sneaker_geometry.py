"""What a sneaker model is, and every polygon and stroke of its silhouette in shoe units."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

Points = np.ndarray  # (n, 2) float array in shoe units: x heel->toe in 0..1, y up from the ground

TOES = ("round", "pointed", "square")
COLLARS = ("low", "mid", "high")
HEELS = ("rounded", "straight", "tab", "raked")
SOLES = ("flat", "chunky", "rocker", "tread", "cupsole")
LOGOS = ("swoosh", "stripes", "star", "ring", "chevron", "bolt", "shield")


@dataclass(frozen=True)
class SneakerModel:
    """A silhouette family: categorical shape choices plus the heights they imply."""

    name: str
    toe: str
    collar: str
    heel: str
    sole: str
    logo: str
    panels: int
    laces: int
    toe_cap: bool
    sole_height: float
    collar_height: float
    toe_height: float
    toe_spring: float


@dataclass(frozen=True)
class Geometry:
    """Every polygon and stroke of one model, in shoe units, computed once per model."""

    upper: Points
    sole: Points
    collar_band: Points
    panels: tuple[Points, ...]
    seams: tuple[Points, ...]
    toe_cap: Points | None
    logo: tuple[tuple[Points, str], ...]  # (polygon, "accent" | "upper")
    laces: tuple[Points, ...]
    sole_stripe: tuple[Points, str] | None  # (polyline, "accent" | "ink")
    bounds: tuple[float, float, float, float]  # x0, y0, x1, y1 of the whole silhouette


def _bezier(*control: tuple[float, float], n: int = 14) -> Points:
    pts = np.asarray(control, dtype=float)
    t = np.linspace(0.0, 1.0, n)[:, None]
    degree = len(pts) - 1
    terms = [
        math.comb(degree, k) * t**k * (1 - t) ** (degree - k) * pts[k] for k in range(degree + 1)
    ]
    return np.sum(terms, axis=0)


def _lift(model: SneakerModel, x: np.ndarray | float) -> np.ndarray:
    toe = model.toe_spring * np.clip((np.asarray(x) - 0.68) / 0.32, 0, 1) ** 2
    heel_share = 0.5 if model.sole == "rocker" else 0.0  # rockers curve up at both ends
    heel = heel_share * model.toe_spring * np.clip((0.2 - np.asarray(x)) / 0.2, 0, 1) ** 2
    return toe + heel


def _base(model: SneakerModel, x: np.ndarray | float) -> np.ndarray:
    return model.sole_height + _lift(model, x)


def _toe_tip(model: SneakerModel) -> float:
    return {"round": 1.0, "pointed": 1.04, "square": 0.985}[model.toe]


def _heel_curve(model: SneakerModel) -> Points:
    hs, ch = model.sole_height, model.collar_height
    mid = hs + 0.5 * (ch - hs)
    if model.heel == "rounded":
        return _bezier((0.04, hs), (-0.06, mid), (0.07, ch))
    if model.heel == "raked":  # the heel counter leans back, like a flared runner
        return _bezier((0.06, hs), (0.02, mid), (-0.05, ch))
    straight = _bezier((0.02, hs), (0.02, mid), (0.03, ch), n=4)
    if model.heel == "straight":
        return straight
    tab = np.array([(0.015, ch + 0.08), (0.09, ch + 0.08), (0.10, ch)])  # pull tab over the collar
    return np.vstack([straight, tab])


def _lace_line(model: SneakerModel) -> Points:
    start = (0.42 if model.collar == "high" else 0.41, model.collar_height - 0.01)
    vamp_x = 0.7
    vamp = (vamp_x, float(_base(model, vamp_x)) + model.toe_height - model.sole_height)
    bend = ((start[0] + vamp[0]) / 2 - 0.01, (start[1] + vamp[1]) / 2 - 0.015)
    return _bezier(start, bend, vamp)


def _toe_curve(model: SneakerModel, vamp: tuple[float, float]) -> Points:
    vy = vamp[1]
    tip = _toe_tip(model)
    ground = float(_base(model, tip - 0.02))
    if model.toe == "round":
        nose = (tip + 0.01, ground + 0.07)
        return np.vstack(
            [
                _bezier(vamp, (0.95, vy), nose),
                _bezier(nose, (tip + 0.01, ground), (tip - 0.03, ground)),
            ]
        )
    if model.toe == "pointed":
        return _bezier(vamp, (0.86, vy - 0.01), (tip, ground + 0.015), (tip - 0.02, ground))
    return np.vstack(
        [
            _bezier(vamp, (0.86, vy + 0.01), (tip - 0.01, vy - 0.01), n=8),
            np.array([(tip, vy - 0.02), (tip, ground)]),
        ]
    )


def _collar_curve(model: SneakerModel, heel_top: Points) -> Points:
    dip = {"low": 0.07, "mid": 0.045, "high": 0.02}[model.collar]
    ch = model.collar_height
    return _bezier(tuple(heel_top), (0.2, ch - dip), (0.31, ch + 0.005))


def _upper_outline(model: SneakerModel) -> tuple[Points, Points, Points, Points]:
    """The upper polygon, plus the collar, lace and toe pieces other parts are built from."""
    heel = _heel_curve(model)
    collar = _collar_curve(model, heel[-1])
    lace = _lace_line(model)
    ch = model.collar_height
    tongue = _bezier((0.31, ch + 0.005), (0.31, ch + 0.075), (0.40, ch + 0.05), lace[0], n=8)
    toe = _toe_curve(model, tuple(lace[-1]))
    bottom_x = np.linspace(toe[-1, 0], heel[0, 0], 16)
    bottom = np.column_stack([bottom_x, _base(model, bottom_x) - 0.01])
    outline = np.vstack([heel, collar, tongue, lace, toe, bottom])
    return outline, collar, lace, toe


def _sole_outline(model: SneakerModel) -> tuple[Points, tuple[Points, str] | None]:
    x = np.linspace(-0.015, _toe_tip(model) + 0.005, 48)
    top = _base(model, x) + 0.004
    bottom = _lift(model, x)
    if model.sole == "tread":  # a toothed outsole
        bottom = bottom + 0.022 * (np.arange(x.size) % 4 < 2)
    elif model.sole == "chunky":  # sculpted midsole waves
        top = top + 0.018 * np.sin(x * 3 * math.pi)
    elif model.sole == "cupsole":  # the rubber wraps up around toe and heel
        top = top + 0.06 * np.clip((x - 0.86) / 0.14, 0, 1) + 0.04 * np.clip((0.1 - x) / 0.1, 0, 1)
    polygon = np.vstack([np.column_stack([x, top]), np.column_stack([x, bottom])[::-1]])
    stripe_y = bottom + 0.45 * (top - bottom)
    stripe = np.column_stack([x, stripe_y])[2:-2]
    if model.sole == "chunky":
        return polygon, (stripe, "accent")
    if model.sole == "cupsole":
        return polygon, (stripe, "ink")
    return polygon, None


def _panels(model: SneakerModel, lace: Points) -> tuple[tuple[Points, ...], tuple[Points, ...]]:
    hs, ch = model.sole_height, model.collar_height
    panels: list[Points] = []
    seams: list[Points] = []
    if model.panels >= 1:  # heel counter
        knee, top = (0.02, hs + 0.55 * (ch - hs)), (0.2, hs + 0.45 * (ch - hs))
        panels.append(_bezier((0.03, hs), knee, top, (0.32, hs)))
    if model.panels >= 2:  # eyestay band under the laces
        panels.append(np.vstack([lace, (lace - [0.02, 0.07])[::-1]]))
    if model.panels >= 3:  # a quarter seam from the laces down to the sole
        mid = lace[len(lace) // 2]
        seams.append(_bezier(tuple(mid - [0.02, 0.07]), (0.5, hs + 0.1), (0.6, hs)))
    return tuple(panels), tuple(seams)


def _toe_cap(model: SneakerModel, toe: Points) -> Points | None:
    if not model.toe_cap:
        return None
    start_x = 0.84
    front = toe[toe[:, 0] >= start_x]
    floor = (start_x, float(_base(model, start_x)))
    seam = _bezier(floor, (start_x - 0.05, floor[1] + 0.06), tuple(front[0]), n=8)
    return np.vstack([seam, front[1:], [floor]])


def _logo(model: SneakerModel, lace: Points) -> tuple[tuple[Points, str], ...]:
    cx = 0.47
    lace_y = float(np.interp(cx, lace[:, 0], lace[:, 1]))
    hs = model.sole_height
    cy = hs + 0.45 * (lace_y - hs)
    radius = min(0.085, 0.33 * (lace_y - hs))
    return tuple((np.asarray(shape) * radius + (cx, cy), role) for shape, role in _mark(model.logo))


def _mark(kind: str) -> list[tuple[Points, str]]:
    """The logo in a unit box around the origin, as (polygon, colour role) pairs."""
    if kind == "swoosh":
        return [
            (
                np.vstack(
                    [
                        _bezier((-1.6, 0.1), (-1.5, -1.3), (1.7, 0.6)),
                        _bezier((1.7, 0.6), (-0.9, -0.5), (-1.5, 0.25)),
                    ]
                ),
                "accent",
            )
        ]
    if kind == "stripes":
        return [
            (np.array([(x - 0.45, -1), (x - 0.15, -1), (x + 0.45, 1), (x + 0.15, 1)]), "accent")
            for x in (-0.7, 0.0, 0.7)
        ]
    if kind == "star":
        angles = np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.15, 0.48)
        return [(np.column_stack([radii * np.cos(angles), radii * np.sin(angles)]), "accent")]
    if kind == "ring":
        turn = np.linspace(0, 2 * np.pi, 24)
        circle = np.column_stack([np.cos(turn), np.sin(turn)])
        return [(circle, "accent"), (circle * 0.5, "upper")]
    if kind == "chevron":
        return [
            (np.array([(-1, 1), (-0.3, 1), (0.9, 0), (-0.3, -1), (-1, -1), (0.2, 0)]), "accent")
        ]
    if kind == "bolt":
        return [
            (
                np.array(
                    [
                        (0.3, 1.2),
                        (-0.7, -0.1),
                        (-0.05, -0.1),
                        (-0.35, -1.2),
                        (0.75, 0.2),
                        (0.1, 0.2),
                    ]
                ),
                "accent",
            )
        ]
    return [
        (
            np.vstack(
                [
                    [(-0.9, 1.0), (0.9, 1.0)],
                    _bezier((0.9, 0.0), (0.7, -0.7), (0.0, -1.1)),
                    _bezier((0.0, -1.1), (-0.7, -0.7), (-0.9, 0.0)),
                ]
            ),
            "accent",
        )
    ]


def _lace_strokes(model: SneakerModel, lace: Points) -> tuple[Points, ...]:
    strokes = []
    for t in np.linspace(0.12, 0.85, model.laces):
        i = t * (len(lace) - 1)
        lo = int(i)
        point = lace[lo] + (lace[min(lo + 1, len(lace) - 1)] - lace[lo]) * (i - lo)
        tangent = lace[min(lo + 1, len(lace) - 1)] - lace[max(lo - 1, 0)]
        normal = np.array([tangent[1], -tangent[0]]) / np.hypot(*tangent)  # points into the shoe
        strokes.append(np.array([point - 0.012 * normal, point + 0.055 * normal]))
    return tuple(strokes)


@lru_cache(maxsize=256)
def geometry(model: SneakerModel) -> Geometry:
    """All the shapes of a model in shoe units; cached since every image of the model reuses it."""
    upper, collar, lace, toe = _upper_outline(model)
    sole, stripe = _sole_outline(model)
    panels, seams = _panels(model, lace)
    band = np.vstack([collar, (collar - [0.0, 0.04])[::-1]])
    both = np.vstack([upper, sole])
    bounds = (*both.min(axis=0).tolist(), *both.max(axis=0).tolist())
    return Geometry(
        upper=upper,
        sole=sole,
        collar_band=band,
        panels=panels,
        seams=seams,
        toe_cap=_toe_cap(model, toe),
        logo=_logo(model, lace),
        laces=_lace_strokes(model, lace),
        sole_stripe=stripe,
        bounds=bounds,
    )
