"""Image checks and decoding with Pillow, shared by the API (cheap header check), the workers
and training (full decode), so that serving sees pixels exactly as training did."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from shared.errors import InvalidImage, UnsupportedMediaType

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
BACKGROUND = (255, 255, 255)  # product photos sit on white; padding and alpha use it too


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and check format and dimensions before any pixel is decoded."""
    if not data:
        raise InvalidImage("the image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=None)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImage("the image has too many pixels (decompression bomb?)") from None
    except UnidentifiedImageError:
        raise InvalidImage("the file is not a decodable image") from None
    except OSError as exc:
        raise InvalidImage(f"the image cannot be read: {exc}") from None
    if image.format not in ALLOWED_FORMATS:
        allowed = ", ".join(sorted(ALLOWED_FORMATS))
        raise UnsupportedMediaType(f"{image.format} images are not accepted; use {allowed}")
    width, height = image.size
    if width < 1 or height < 1 or width * height > max_pixels:
        raise InvalidImage(f"the image is {width}x{height} pixels; at most {max_pixels} allowed")
    return image


def sniff(data: bytes, *, max_pixels: int) -> str:
    """Check the header and return the format name (JPEG, PNG, WEBP); raises on anything else."""
    return str(_open(data, max_pixels).format)


def decode(data: bytes, *, size: int, max_pixels: int) -> np.ndarray:
    """Fully decode to an RGB uint8 array of shape (size, size, 3), padded to keep its aspect."""
    image = _open(data, max_pixels)
    if image.format == "JPEG":
        # draft() lets libjpeg decode at a reduced scale: much faster for large photos.
        image.draft("RGB", (size, size))
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        rgb = _to_rgb(image)
        rgb = ImageOps.pad(rgb, (size, size), method=Image.Resampling.BILINEAR, color=BACKGROUND)
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage(f"the image is truncated or corrupt: {exc}") from None
    return np.asarray(rgb, dtype=np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Flatten palette, alpha, CMYK, 16-bit and grayscale images onto RGB."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: scale to 8 bits instead of clipping everything to white.
        array = np.asarray(image, dtype=np.uint32) >> 8
        return Image.fromarray(array.astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")
