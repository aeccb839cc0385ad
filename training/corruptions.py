"""A fixed, seeded suite of real-photo degradations (Pillow and NumPy only): phone JPEG compression,
small rotations and crops, lighting, slight blur and colour casts, one at a time and chained.

Each corruption draws its parameters from bounds named here, so a test can check them, and then
applies them; `corrupt` does both. Strengths are drawn between half the stated maximum and the
maximum, either way: a photo that is barely touched would only dilute the measurement. The
random stream of a photo depends only on the suite's seed, the corruption and the photo's
index, so the same photos and seed give the same bytes."""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from shared.errors import InvalidArgument

JPEG_QUALITY = (20, 60)  # inclusive
MAX_ROTATION = 15.0  # degrees, either way
MAX_LIGHTING = 0.35  # brightness and contrast factors within 1 +- this
MAX_CROP = 0.10  # share of each side cut away, at most
BLUR_RADIUS = (0.01, 0.02)  # Gaussian radius as a share of the shorter side (64 px: 0.6-1.3)
# White-balance error: per-channel gains within 1 +- this. Colour is what tells colourways apart,
# and a cast well beyond what a phone's auto white balance leaves turns one colourway into another.
MAX_CAST = 0.08
MIXED_STEPS = 3  # a "mixed" photo: this many of the single degradations, then JPEG

Params = dict[str, Any]


def _jpeg_params(rng: np.random.Generator) -> Params:
    return {"quality": int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1], endpoint=True))}


def _jpeg(image: Image.Image, p: Params) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=p["quality"])
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def _strength(rng: np.random.Generator, most: float, size: int | None = None) -> Any:
    """Between most / 2 and most, either way."""
    sign = rng.choice([-1.0, 1.0], size=size)
    return sign * rng.uniform(most / 2, most, size=size)


def _rotate_params(rng: np.random.Generator) -> Params:
    return {"degrees": float(_strength(rng, MAX_ROTATION))}


def _rotate(image: Image.Image, p: Params) -> Image.Image:
    # The corners the rotation uncovers take the photo's border colour: the backdrop continues.
    return image.rotate(
        p["degrees"], resample=Image.Resampling.BILINEAR, fillcolor=border_colour(image)
    )


def _factor_params(rng: np.random.Generator) -> Params:
    return {"factor": float(1 + _strength(rng, MAX_LIGHTING))}


def _brightness(image: Image.Image, p: Params) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(p["factor"])


def _contrast(image: Image.Image, p: Params) -> Image.Image:
    return ImageEnhance.Contrast(image).enhance(p["factor"])


def _crop_params(rng: np.random.Generator) -> Params:
    cut = float(rng.uniform(MAX_CROP / 2, MAX_CROP))
    return {"cut": cut, "x": float(rng.random()), "y": float(rng.random())}


def _crop(image: Image.Image, p: Params) -> Image.Image:
    """Cut `cut` of each side away, split between the two edges as x and y say."""
    width, height = image.size
    cut_w, cut_h = int(width * p["cut"]), int(height * p["cut"])
    left, top = round(cut_w * p["x"]), round(cut_h * p["y"])
    return image.crop((left, top, left + width - cut_w, top + height - cut_h))


def _blur_params(rng: np.random.Generator) -> Params:
    return {"radius": float(rng.uniform(*BLUR_RADIUS))}


def _blur(image: Image.Image, p: Params) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(p["radius"] * min(image.size)))


def _cast_params(rng: np.random.Generator) -> Params:
    return {"gains": [float(g) for g in 1 + _strength(rng, MAX_CAST, size=3)]}


def _colour_cast(image: Image.Image, p: Params) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32) * np.asarray(p["gains"], dtype=np.float32)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


Draw = Callable[[np.random.Generator], Params]
Apply = Callable[[Image.Image, Params], Image.Image]

# In the order a phone photo meets them: framing, optics, light, white balance, compression.
SINGLE: dict[str, tuple[Draw, Apply]] = {
    "rotate": (_rotate_params, _rotate),
    "crop": (_crop_params, _crop),
    "blur": (_blur_params, _blur),
    "brightness": (_factor_params, _brightness),
    "contrast": (_factor_params, _contrast),
    "colour_cast": (_cast_params, _colour_cast),
    "jpeg": (_jpeg_params, _jpeg),
}
CORRUPTIONS = (*SINGLE, "mixed")


def draw(name: str, rng: np.random.Generator) -> Params:
    """The parameters of corruption `name` for one photo; "mixed" lists its steps in order."""
    if name == "mixed":
        others = [n for n in SINGLE if n != "jpeg"]
        chosen = set(rng.choice(len(others), size=MIXED_STEPS, replace=False).tolist())
        steps = [n for i, n in enumerate(others) if i in chosen] + ["jpeg"]
        return {"steps": [(step, SINGLE[step][0](rng)) for step in steps]}
    if name not in SINGLE:
        raise InvalidArgument(f"unknown corruption {name!r}; use one of {', '.join(CORRUPTIONS)}")
    return SINGLE[name][0](rng)


def apply(image: Image.Image, name: str, params: Params) -> Image.Image:
    """`image` (RGB) degraded by corruption `name` with the given parameters."""
    if name == "mixed":
        for step, step_params in params["steps"]:
            image = apply(image, step, step_params)
        return image
    if name not in SINGLE:
        raise InvalidArgument(f"unknown corruption {name!r}; use one of {', '.join(CORRUPTIONS)}")
    return SINGLE[name][1](image.convert("RGB"), params)


def photo_rng(seed: int, name: str, index: int) -> np.random.Generator:
    """The random stream of photo `index` under corruption `name`: independent of the others,
    and of the order photos are processed in."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), index])


def corrupt(image: Image.Image, name: str, *, seed: int, index: int) -> Image.Image:
    """Photo number `index` of a set degraded by corruption `name`, as suite `seed` draws it."""
    return apply(image, name, draw(name, photo_rng(seed, name, index)))


def border_colour(image: Image.Image) -> tuple[int, int, int]:
    """The median colour of the outermost pixels: the backdrop, for most product photos."""
    pixels = np.asarray(image.convert("RGB"))
    edge = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    r, g, b = (int(v) for v in np.median(edge, axis=0))
    return r, g, b
