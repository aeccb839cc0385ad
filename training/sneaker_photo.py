"""Turning a drawn sneaker into a varied photo: pose, backdrop, shadow, lighting and noise."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from training.colourways import Colourway
from training.sneaker_drawing import Pose, draw_sneaker
from training.sneaker_geometry import SneakerModel, geometry

SUPERSAMPLE = 2  # draw at twice the size and box-filter down: cheap anti-aliasing
BACKDROP_CELLS = 8  # resolution of the backdrop's colour field before it is smoothed up


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
    noise = rng.standard_normal(pixels.shape, dtype=np.float32)
    pixels = pixels + noise * rng.uniform(0.5, 5.0)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))
