"""Turning a drawn sneaker into a varied photo: pose, crop, backdrop, clutter, shadow, occlusion,
lighting, blur, sensor noise and JPEG artefacts, at a strength set by a `Variation` profile."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from training.colourways import Colourway
from training.sneaker_drawing import Pose, draw_sneaker
from training.sneaker_geometry import SneakerModel, geometry

SUPERSAMPLE = 2  # draw at twice the size and box-filter down: cheap anti-aliasing
BACKDROP_CELLS = 8  # resolution of the backdrop's colour field before it is smoothed up


@dataclass(frozen=True)
class Variation:
    """How hard the photos are: the chance and strength of each real-world nuisance."""

    rotation: float  # degrees, either way
    crop: float  # chance that part of the shoe runs off the frame
    occlusion: float  # chance of an object in front of the shoe
    occluder_size: tuple[float, float]  # its radius, as a fraction of the shoe length
    lighting: float  # strength of the light gradient across the frame
    colour_cast: float  # per-channel gain spread (white balance)
    blur: float  # chance of a slightly out-of-focus photo
    jpeg: float  # chance of JPEG compression artefacts
    jpeg_quality: tuple[int, int]


VARIATIONS: dict[str, Variation] = {
    # What training sees.
    "standard": Variation(
        rotation=6.0,
        crop=0.15,
        occlusion=0.25,
        occluder_size=(0.08, 0.16),
        lighting=0.12,
        colour_cast=0.03,
        blur=0.15,
        jpeg=0.3,
        jpeg_quality=(45, 90),
    ),
    # Stronger than anything in "standard": photos whose variation the training never saw.
    "hard": Variation(
        rotation=12.0,
        crop=0.35,
        occlusion=0.5,
        occluder_size=(0.12, 0.22),
        lighting=0.25,
        colour_cast=0.06,
        blur=0.4,
        jpeg=0.7,
        jpeg_quality=(20, 50),
    ),
}


def render_sneaker(
    model: SneakerModel,
    colourway: Colourway,
    *,
    size: int,
    rng: np.random.Generator,
    variation: Variation = VARIATIONS["standard"],
) -> Image.Image:
    """One varied RGB photo of the sneaker."""
    canvas = int(size) * SUPERSAMPLE
    pose = _random_pose(geometry(model).bounds, canvas, rng, variation)
    image = _background(canvas, rng)
    _cast_shadow(image, pose, rng)
    draw_sneaker(ImageDraw.Draw(image), model, colourway, pose)
    if rng.random() < variation.occlusion:
        _occlude(image, pose, geometry(model).bounds, rng, variation)
    photo = _relight(image.reduce(SUPERSAMPLE), rng, variation)
    if rng.random() < variation.blur:
        photo = photo.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.9) * size / 64))
    if rng.random() < variation.jpeg:
        photo = _jpeg_artefacts(photo, int(rng.integers(*variation.jpeg_quality, endpoint=True)))
    return photo


def _random_pose(
    bounds: tuple[float, ...], canvas: int, rng: np.random.Generator, variation: Variation
) -> Pose:
    x0, y0, x1, y1 = bounds
    cropped = rng.random() < variation.crop
    scale = canvas * rng.uniform(*((0.8, 0.98) if cropped else (0.62, 0.85))) / (x1 - x0)
    angle = math.radians(rng.uniform(-variation.rotation, variation.rotation))
    # The rotated bounding box's half extents: the whole shoe stays in the frame, or, for a
    # cropped photo, up to about a tenth of its length runs off one side.
    w, h = (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    cos, sin = abs(math.cos(angle)), abs(math.sin(angle))
    half = np.array([w * cos + h * sin, w * sin + h * cos])
    margin = -0.2 * half if cropped else 0.02 * canvas
    slack = np.maximum(canvas / 2 - half - margin, 0.0)
    centre = canvas / 2 + rng.uniform(-slack, slack)
    return Pose(
        scale=scale,
        angle=angle,
        centre=(float(centre[0]), float(centre[1])),
        anchor=((x0 + x1) / 2, (y0 + y1) / 2),
    )


def _occlude(
    image: Image.Image,
    pose: Pose,
    bounds: tuple[float, ...],
    rng: np.random.Generator,
    variation: Variation,
) -> None:
    """Something in front of the shoe (a hand, a tag, a box corner): a soft-edged blob."""
    x0, y0, x1, y1 = bounds
    # A point on the shoe's outline region: its box, biased towards the edges.
    u, v = rng.uniform(0, 1, size=2) ** 0.5 * rng.choice([-1, 1], size=2)
    point = np.array([[(x0 + x1) / 2 + u * (x1 - x0) / 2, (y0 + y1) / 2 + v * (y1 - y0) / 2]])
    cx, cy = pose.to_px(point)[0]
    radius = rng.uniform(*variation.occluder_size) * (x1 - x0) * pose.scale
    rx, ry = radius * rng.uniform(0.6, 1.4), radius * rng.uniform(0.6, 1.4)
    colour = _occluder_colour(rng)
    draw = ImageDraw.Draw(image)
    if rng.random() < 0.5:
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=colour)
    else:
        draw.rectangle((cx - rx, cy - ry, cx + rx, cy + ry), fill=colour)


def _occluder_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    if rng.random() < 0.5:  # skin tones: a hand holding the shoe
        tone = rng.uniform(0.35, 1.0)
        return (int(120 + 110 * tone), int(80 + 100 * tone), int(60 + 90 * tone))
    return tuple(int(c) for c in _soft_colour(rng))  # type: ignore[return-value]


def _jpeg_artefacts(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as reopened:
        return reopened.convert("RGB")


def _soft_colour(rng: np.random.Generator) -> np.ndarray:
    """A light, weakly saturated backdrop colour, so the shoe's colours stay the loudest."""
    grey = rng.uniform(135, 250)
    tint = rng.normal(0, 12, size=3)
    return np.clip(grey + tint, 0, 255)


def _background(canvas: int, rng: np.random.Generator) -> Image.Image:
    """A smooth backdrop (solid, two-colour gradient, or blotchy with clutter)."""
    kind = rng.choice(3, p=[0.35, 0.35, 0.3])
    first = _soft_colour(rng)
    if kind == 0:
        return Image.new("RGB", (canvas, canvas), tuple(int(c) for c in first))
    # Computed on a coarse grid and blown up: the backdrop is smooth, and this is much cheaper.
    ramp = np.linspace(-1.0, 1.0, BACKDROP_CELLS)
    theta = rng.uniform(0, 2 * math.pi)
    t = (np.cos(theta) * ramp[None, :] + np.sin(theta) * ramp[:, None] + 1.4) / 2.8
    second = _soft_colour(rng) if kind == 1 else first
    pixels = first + t[..., None] * (second - first)
    if kind == 2:
        pixels = pixels + rng.normal(0, 9, size=(BACKDROP_CELLS, BACKDROP_CELLS, 1))
    coarse = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    image = coarse.resize((canvas, canvas), Image.Resampling.BILINEAR)
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


def _relight(image: Image.Image, rng: np.random.Generator, variation: Variation) -> Image.Image:
    """Brightness, contrast, a soft light gradient and noise; no hue shifts that swap colours."""
    pixels = np.asarray(image, dtype=np.float32)
    size = image.width
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    tilt = np.cos(theta) * ramp[None, :] + np.sin(theta) * ramp[:, None]
    field = 1 + rng.uniform(0, variation.lighting) * tilt
    pixels = pixels * field[..., None]
    mean = pixels.mean()
    pixels = (pixels - mean) * rng.uniform(0.85, 1.15) + mean
    cast = variation.colour_cast
    pixels = pixels * rng.uniform(0.9, 1.1) * rng.uniform(1 - cast, 1 + cast, size=3)
    noise = rng.standard_normal(pixels.shape, dtype=np.float32)
    pixels = pixels + noise * rng.uniform(0.5, 5.0)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))
