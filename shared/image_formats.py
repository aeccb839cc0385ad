"""The image formats skuai accepts, in one place: Pillow format names, media types and file
suffixes, shared by the API's content check, decoding, training's dataset scan and the client.

Pillow decodes JPEG, PNG, WEBP, AVIF, GIF, TIFF and BMP itself; HEIC/HEIF needs the
`pillow-heif` plugin, registered by `register_plugins()` before the first image is opened."""

from __future__ import annotations

from functools import cache

# Pillow's format name -> the media type a client would send for it.
MEDIA_TYPES: dict[str, str] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "AVIF": "image/avif",
    "HEIF": "image/heic",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
}
ACCEPTED_FORMATS = frozenset(MEDIA_TYPES)
# File suffixes of the accepted formats (lower case): what training and the client pick up.
IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".webp",
        ".avif",
        ".heic",
        ".heif",
        ".hif",
        ".gif",
        ".tif",
        ".tiff",
        ".bmp",
    }
)
# How error messages name the accepted formats.
ACCEPTED_NAMES = "JPEG, PNG, WEBP, AVIF, HEIC/HEIF, GIF, TIFF or BMP"


@cache
def register_plugins() -> None:
    """Teach Pillow to open HEIC/HEIF (once per process)."""
    from pillow_heif import register_heif_opener

    register_heif_opener()
