"""The shared decoder: formats, modes and orientation handled; hostile files refused clearly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.errors import InvalidImage, UnsupportedMediaType
from shared.images import decode, sniff
from tests.image_files import declaring

MAX = 10_000_000


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (40, 20), (200, 10, 10)),
        Image.new("RGBA", (20, 20), (200, 10, 10, 255)),
        Image.new("L", (20, 20), 128),
        Image.new("RGB", (20, 20), (200, 10, 10)).convert("P"),
        Image.new("I;16", (20, 20), 40000),
    ],
    ids=["rgb", "rgba", "gray", "palette", "16-bit"],
)
def test_modes_become_rgb_of_the_requested_size(image: Image.Image) -> None:
    pixels = decode(_encode(image, "PNG"), size=32, max_pixels=MAX)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    pixels = decode(_encode(Image.new("I;16", (8, 8), 32768), "PNG"), size=32, max_pixels=MAX)
    assert 120 <= pixels[16, 16, 0] <= 135


def test_transparent_pixels_become_white() -> None:
    pixels = decode(
        _encode(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), "PNG"), size=32, max_pixels=MAX
    )
    assert (pixels == 255).all()


def test_cmyk_jpeg_and_webp() -> None:
    cmyk = _encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG")
    assert decode(cmyk, size=32, max_pixels=MAX)[16, 16, 0] > 200
    assert sniff(_encode(Image.new("RGB", (16, 16)), "WEBP"), max_pixels=MAX) == "WEBP"


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (64, 32), "white")
    image.paste((255, 0, 0), (0, 0, 32, 32))  # red on the left half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display: red ends up on top
    pixels = decode(_encode(image, "JPEG", exif=exif), size=64, max_pixels=MAX)
    assert pixels[8, 32, 0] > 200 and pixels[8, 32, 1] < 80
    assert pixels[56, 32, 1] > 200


def test_aspect_is_kept_by_padding() -> None:
    pixels = decode(_encode(Image.new("RGB", (64, 16), (0, 0, 0)), "PNG"), size=32, max_pixels=MAX)
    assert (pixels[0] == 255).all() and (pixels[16] == 0).all()


@pytest.mark.parametrize(
    ("data", "error", "fragment"),
    [
        (b"", InvalidImage, "empty"),
        (b"GIF89a not really", InvalidImage, "not a decodable image: it starts like GIF"),
        (_encode(Image.new("RGB", (8, 8)), "ICO"), UnsupportedMediaType, "ICO images are not"),
        (_encode(Image.new("RGB", (8, 8)), "PCX"), UnsupportedMediaType, "PCX images are not"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", UnsupportedMediaType, "not an image in an accepted"),
        (b"just some text, named shoe.jpg", UnsupportedMediaType, "HEIC/HEIF, GIF, TIFF or BMP"),
        (_encode(Image.new("L", (4000, 3000)), "PNG"), InvalidImage, "at most"),
    ],
    ids=["empty", "fake", "ico", "pcx", "pdf", "text", "too-many-pixels"],
)
def test_refused_inputs(data: bytes, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        decode(data, size=32, max_pixels=MAX)


def test_truncated_file_is_invalid_but_its_header_passes_the_sniff() -> None:
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(noise), "PNG")[:2000]
    assert sniff(data, max_pixels=MAX) == "PNG"
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        decode(data, size=32, max_pixels=MAX)


def test_animated_images_use_their_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((250, 0, 0), (0, 0, 250))]
    for fmt in ("PNG", "WEBP"):  # APNG and animated WebP
        data = _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50)
        pixels = decode(data, size=32, max_pixels=MAX)
        assert pixels[16, 16, 0] > 200 and pixels[16, 16, 2] < 60, fmt


def test_the_extension_does_not_matter_the_content_does() -> None:
    png_named_jpg = _encode(Image.new("RGB", (8, 8), "blue"), "PNG")
    assert sniff(png_named_jpg, max_pixels=MAX) == "PNG"


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # 30,000 x 30,000 pixels in a few hundred bytes: refused from the header alone.
    bomb = declaring("PNG", 30_000, 30_000)
    assert len(bomb) < 1000
    with pytest.raises(InvalidImage, match=r"too many pixels|at most"):
        sniff(bomb, max_pixels=MAX)
