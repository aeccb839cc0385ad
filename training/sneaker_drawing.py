"""Drawing a sneaker model on a PIL canvas in a given pose, in a colourway's flat colours."""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, ImageDraw

from training.colourways import RGB, Colourway
from training.sneaker_geometry import Points, SneakerModel, geometry

INK: RGB = (40, 40, 44)  # seams and outlines: a dark edge keeps the silhouette visible in grayscale
STROKE = 0.012  # outline width, as a fraction of the shoe length


@dataclass(frozen=True)
class Pose:
    """Where the shoe lands: pixels per shoe length, tilt, and the canvas point of `anchor`."""

    scale: float
    angle: float  # radians
    centre: tuple[float, float]
    anchor: tuple[float, float] = (0.5, 0.3)  # the shoe-unit point that lands on `centre`

    def to_px(self, points: Points) -> list[tuple[float, float]]:
        """Map shoe-unit points (y up) to canvas pixels (y down)."""
        x = (points[:, 0] - self.anchor[0]) * self.scale
        y = (self.anchor[1] - points[:, 1]) * self.scale
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        px = cos * x - sin * y + self.centre[0]
        py = sin * x + cos * y + self.centre[1]
        return list(zip(px.tolist(), py.tolist(), strict=True))


def _shade(colour: RGB, factor: float) -> RGB:
    r, g, b = colour
    if r + g + b < 180:  # dark colours get lighter overlays, or the panels vanish in grayscale
        return (
            min(255, int(r + 45 * factor)),
            min(255, int(g + 45 * factor)),
            min(255, int(b + 45 * factor)),
        )
    keep = 1 - 0.25 * factor
    return (int(r * keep), int(g * keep), int(b * keep))


def draw_sneaker(
    draw: ImageDraw.ImageDraw, model: SneakerModel, colourway: Colourway, pose: Pose
) -> None:
    """Draw the sneaker, in flat colours with dark seams, onto `draw` at `pose`."""
    shape = geometry(model)
    px = pose.to_px
    width = max(1, round(pose.scale * STROKE))
    roles = {"accent": colourway.accent, "upper": colourway.upper, "ink": INK}
    draw.polygon(px(shape.upper), fill=colourway.upper, outline=INK, width=width)
    for panel in shape.panels:
        draw.polygon(px(panel), fill=_shade(colourway.upper, 1.0), outline=INK, width=width)
    for seam in shape.seams:
        draw.line(px(seam), fill=INK, width=width)
    if shape.toe_cap is not None:
        draw.polygon(px(shape.toe_cap), fill=colourway.sole, outline=INK, width=width)
    draw.polygon(px(shape.collar_band), fill=_shade(colourway.upper, 2.4), outline=INK, width=width)
    for polygon, role in shape.logo:
        draw.polygon(px(polygon), fill=roles[role], outline=INK, width=max(1, width // 2))
    for stroke in shape.laces:
        draw.line(px(stroke), fill=colourway.laces, width=max(1, round(pose.scale * 0.024)))
    draw.polygon(px(shape.sole), fill=colourway.sole, outline=INK, width=width)
    if shape.sole_stripe is not None:
        line, role = shape.sole_stripe
        draw.line(px(line), fill=roles[role], width=max(1, round(pose.scale * 0.016)))


def silhouette(model: SneakerModel, size: int) -> Image.Image:
    """The model's outline as a white-on-black mask in a fixed pose, for comparing shapes."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    pose = Pose(scale=0.85 * size, angle=0.0, centre=(size / 2, size / 2))
    shape = geometry(model)
    draw.polygon(pose.to_px(shape.upper), fill=255)
    draw.polygon(pose.to_px(shape.sole), fill=255)
    return mask
