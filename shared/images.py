"""Image checks and decoding with Pillow, shared by the API (cheap header check), the workers
and training (full decode), so that serving sees pixels exactly as training did.

The format is told from the content, never from a file name. Only the accepted formats' decoders
ever parse an upload; any other Pillow plugin at most names what was sent."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from shared.errors import InvalidImage, UnsupportedMediaType
from shared.image_formats import ACCEPTED_FORMATS, ACCEPTED_NAMES, MEDIA_TYPES, register_plugins

BACKGROUND = (255, 255, 255)  # product photos sit on white; padding and alpha use it too
# Tried in this order; AVIF before HEIF so that Pillow's own AVIF decoder reads AVIF files.
OPEN_ORDER = tuple(MEDIA_TYPES)
# Pillow names a camera JPEG that carries a second picture (a preview, a depth map) MPO.
ALIASES = {"MPO": "JPEG"}
PREFIX_BYTES = 16  # as many as Pillow's own format checks look at

register_plugins()  # HEIC/HEIF, before any image of this process is opened


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and check format and dimensions before any pixel is decoded."""
    if not data:
        raise InvalidImage("the image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=OPEN_ORDER)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImage("the image has too many pixels (decompression bomb?)") from None
    except UnidentifiedImageError:
        raise _unopened(data) from None
    except (OSError, ValueError) as exc:
        raise InvalidImage(f"the image cannot be read: {exc}") from None
    if ALIASES.get(str(image.format), image.format) not in ACCEPTED_FORMATS:
        raise _unsupported(f"{image.format} images are not accepted")  # a plugin's subclass
    width, height = image.size
    if width < 1 or height < 1 or width * height > max_pixels:
        raise InvalidImage(f"the image is {width}x{height} pixels; at most {max_pixels} allowed")
    return image


def _unopened(data: bytes) -> InvalidImage | UnsupportedMediaType:
    """Why no accepted decoder opened `data`: a broken file of an accepted format (422), or
    content of another kind (415, naming it when Pillow knows it)."""
    claimed = _claimed_format(data)
    if claimed is not None:
        return InvalidImage(
            f"the file is not a decodable image: it starts like {claimed} but cannot be read"
        )
    other = _other_format(data)
    if other is not None:
        return _unsupported(f"{other} images are not accepted")
    return _unsupported("the file is not an image in an accepted format")


def _unsupported(reason: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(f"{reason}; send {ACCEPTED_NAMES}")


def _claimed_format(data: bytes) -> str | None:
    """The accepted format whose signature `data` starts with, if any (Pillow's own checks)."""
    prefix = data[:PREFIX_BYTES].ljust(PREFIX_BYTES, b"\0")
    for name in OPEN_ORDER:
        accept = Image.OPEN.get(name, (None, None))[1]
        if accept is not None and accept(prefix):
            return name
    return None


def _other_format(data: bytes) -> str | None:
    """What Pillow identifies `data` as, opening the header only, just to name it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return str(Image.open(io.BytesIO(data)).format)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
        return None


def sniff(data: bytes, *, max_pixels: int) -> str:
    """Check the header and return the accepted format's name; raises on anything else."""
    image = _open(data, max_pixels)
    return ALIASES.get(str(image.format), str(image.format))


def decode(data: bytes, *, size: int, max_pixels: int) -> np.ndarray:
    """Fully decode to an RGB uint8 array of shape (size, size, 3), padded to keep its aspect.

    Animated and multi-page files (GIF, TIFF, APNG, WEBP, AVIF, HEIC) give their first frame or
    page, the one Pillow opens on."""
    image = _open(data, max_pixels)
    if image.format in ("JPEG", "MPO"):
        # draft() lets libjpeg decode at a reduced scale: much faster for large photos.
        image.draft("RGB", (size, size))
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        rgb = _to_rgb(image)
        rgb = ImageOps.pad(rgb, (size, size), method=Image.Resampling.BILINEAR, color=BACKGROUND)
    except (OSError, ValueError, SyntaxError, RuntimeError) as exc:
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
