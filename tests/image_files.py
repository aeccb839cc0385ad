"""Real image files for the format tests, written by Pillow's and pillow-heif's own encoders, and
hostile ones: the same files with a header that declares huge dimensions."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

from PIL import Image

from shared.image_formats import ACCEPTED_FORMATS, register_plugins

register_plugins()

# Each accepted format with a file suffix a user would give it.
SUFFIXES = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "AVIF": ".avif",
    "HEIF": ".heic",
    "GIF": ".gif",
    "TIFF": ".tiff",
    "BMP": ".bmp",
}
assert set(SUFFIXES) == ACCEPTED_FORMATS  # a new accepted format needs a test file too


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """`image` saved as `fmt` (a copy: Pillow keeps encoder settings on the image it saved)."""
    buffer = io.BytesIO()
    image.copy().save(buffer, format=fmt, **options)
    return buffer.getvalue()


def frames(fmt: str, first: Image.Image, *rest: Image.Image) -> bytes:
    """An animated or multi-page file (GIF, TIFF, WEBP, AVIF, HEIC, APNG, MPO)."""
    return encode(first, fmt, save_all=True, append_images=[r.copy() for r in rest])


def _png(data: bytes, width: int, height: int) -> bytes:
    # IHDR is the first chunk: length, type, width, height, ..., then its CRC.
    body = struct.pack(">II", width, height) + data[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + body))
    return data[:16] + body + crc + data[33:]


def _jpeg(data: bytes, width: int, height: int) -> bytes:
    at = data.index(b"\xff\xc0") + 5  # baseline SOF: length, precision, then height, width
    return data[:at] + struct.pack(">HH", height, width) + data[at + 4 :]


def _webp(data: bytes, width: int, height: int) -> bytes:
    # Lossy VP8: RIFF header, "VP8 " chunk header, frame tag, start code, then 14-bit sizes.
    return data[:26] + struct.pack("<HH", width, height) + data[30:]


def _isobmff(data: bytes, width: int, height: int) -> bytes:
    # HEIF and AVIF: the 'ispe' property (size, type, version/flags, width, height).
    at = data.index(b"ispe") + 8
    return data[:at] + struct.pack(">II", width, height) + data[at + 8 :]


def _gif(data: bytes, width: int, height: int) -> bytes:
    return data[:6] + struct.pack("<HH", width, height) + data[10:]


def _tiff(data: bytes, width: int, height: int) -> bytes:
    out = bytearray(data)
    ifd = struct.unpack_from("<I", out, 4)[0]  # Pillow writes little-endian ("II")
    for i in range(struct.unpack_from("<H", out, ifd)[0]):
        entry = ifd + 2 + 12 * i
        tag = struct.unpack_from("<H", out, entry)[0]
        if tag in (256, 257):  # ImageWidth, ImageLength, rewritten as LONGs
            struct.pack_into("<HHII", out, entry, tag, 4, 1, width if tag == 256 else height)
    return bytes(out)


def _bmp(data: bytes, width: int, height: int) -> bytes:
    return data[:18] + struct.pack("<ii", width, height) + data[26:]


_DECLARE: dict[str, Callable[[bytes, int, int], bytes]] = {
    "JPEG": _jpeg,
    "PNG": _png,
    "WEBP": _webp,
    "AVIF": _isobmff,
    "HEIF": _isobmff,
    "GIF": _gif,
    "TIFF": _tiff,
    "BMP": _bmp,
}


def declaring(fmt: str, width: int, height: int) -> bytes:
    """A small real `fmt` file whose header claims `width` x `height` pixels (a bomb's header)."""
    # 64 x 64: HEIF needs no clean-aperture crop, so 'ispe' alone gives the size.
    data = encode(Image.new("RGB", (64, 64), (200, 30, 30)), fmt)
    return _DECLARE[fmt](data, width, height)
