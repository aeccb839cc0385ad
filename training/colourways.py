"""The colours of a SKU, the palette they come from, and the pool of distinguishable colourways."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]

# Hues far apart, and dark/light pairs far enough apart that lighting changes cannot swap them.
PALETTE: dict[str, RGB] = {
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


@dataclass(frozen=True)
class Colourway:
    """The colours of one SKU; `name` joins the upper, sole and accent colour names."""

    name: str
    upper: RGB
    sole: RGB
    accent: RGB
    laces: RGB


def colourway_pool(rng: np.random.Generator) -> list[Colourway]:
    """Every colourway the palette allows, pairwise differing in two of upper, sole, accent."""
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
        pool.append(_colourway(names[u], names[s], names[a], names[laces]))
    return [pool[i] for i in rng.permutation(len(pool))]


def _colourway(upper: str, sole: str, accent: str, laces: str) -> Colourway:
    return Colourway(
        name=f"{upper}-{sole}-{accent}",
        upper=PALETTE[upper],
        sole=PALETTE[sole],
        accent=PALETTE[accent],
        laces=PALETTE[laces],
    )
