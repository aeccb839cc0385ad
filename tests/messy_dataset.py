"""A dataset folder as real scraped photos come: every accepted format, byte-identical copies,
re-encoded and resized copies, a SKU with one photo, a SKU with nothing usable, a truncated file,
text files, a tiny image and two SKU folders whose names differ only in case and punctuation."""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image, ImageDraw

from shared.image_formats import register_plugins

register_plugins()

FORMATS = (  # Pillow format, suffix: one distinct photo per format in the first SKU
    ("JPEG", ".jpg"),
    ("PNG", ".png"),
    ("WEBP", ".webp"),
    ("AVIF", ".avif"),
    ("HEIF", ".heic"),
    ("GIF", ".gif"),
    ("TIFF", ".tiff"),
    ("BMP", ".bmp"),
)
SIDE = 96


def photo(seed: int, side: int = SIDE) -> Image.Image:
    """A distinct picture per seed: random shapes in random colours on white."""
    rng = random.Random(seed)
    image = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.randrange(side * 3 // 4), rng.randrange(side * 3 // 4)
        box = (
            x0,
            y0,
            rng.randrange(x0 + side // 8, side + 1),
            rng.randrange(y0 + side // 8, side + 1),
        )
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """`image` in `fmt`, by Pillow's (or pillow-heif's) own encoder."""
    buffer = io.BytesIO()
    image.copy().save(buffer, format=fmt, **options)
    return buffer.getvalue()


def write_photos(folder: Path, seeds: range, fmt: str = "PNG", suffix: str = ".png") -> None:
    """One distinct photo per seed in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (folder / f"p{seed:03d}{suffix}").write_bytes(encode(photo(seed), fmt))


def messy_dataset(root: Path) -> Path:
    """Write the messy dataset (see the module docstring) under `root` and return it."""
    red = root / "runner" / "runner-red"
    red.mkdir(parents=True)
    for seed, (fmt, suffix) in enumerate(FORMATS):
        (red / f"p{seed:03d}{suffix}").write_bytes(encode(photo(seed), fmt))
    write_photos(red, range(8, 14))
    jpeg = (red / "p000.jpg").read_bytes()
    (red / "copy-of-p000.jpg").write_bytes(jpeg)  # byte-identical
    (red / "p001-q40.jpg").write_bytes(encode(photo(1), "JPEG", quality=40))  # re-encoded
    (red / "p002-webp.webp").write_bytes(encode(photo(2), "WEBP", quality=60))
    half = photo(3).resize((SIDE // 2, SIDE // 2), Image.Resampling.LANCZOS)
    (red / "p003-half.png").write_bytes(encode(half, "PNG"))  # resized
    double = photo(8).resize((SIDE * 2, SIDE * 2), Image.Resampling.LANCZOS)
    (red / "p008-double.jpg").write_bytes(encode(double, "JPEG", quality=85))
    whole = encode(photo(99), "JPEG")
    (red / "truncated.jpg").write_bytes(whole[: len(whole) * 3 // 4])  # cut off mid-scan
    (red / "notes.txt").write_text("scraped from a retail site\n")
    (red / "tiny.png").write_bytes(encode(photo(98, side=16), "PNG"))
    write_photos(root / "runner" / "Runner Blue", range(20, 32))
    write_photos(root / "court" / "runner-blue", range(40, 52), "JPEG", ".jpg")
    write_photos(root / "court" / "court-white", range(60, 61))  # one photo
    empty = root / "court" / "court-empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("photos to follow\n")
    (root / "court" / "court-white" / "old").mkdir()  # a folder in a SKU folder: not read
    return root


# What the check must find in the messy dataset (paths relative to it).
NOT_IMAGES = {"runner/runner-red/notes.txt", "court/court-empty/readme.txt"}
UNREADABLE = {"runner/runner-red/truncated.jpg"}
EXACT = [{"runner/runner-red/p000.jpg", "runner/runner-red/copy-of-p000.jpg"}]
NEAR = [
    {"runner/runner-red/p001.png", "runner/runner-red/p001-q40.jpg"},
    {"runner/runner-red/p002.webp", "runner/runner-red/p002-webp.webp"},
    {"runner/runner-red/p003.avif", "runner/runner-red/p003-half.png"},
    {"runner/runner-red/p008.png", "runner/runner-red/p008-double.jpg"},
]
CLASH = {"runner/Runner Blue", "court/runner-blue"}
TOO_SMALL = {"runner/runner-red/tiny.png", "runner/runner-red/p003-half.png"}  # at 64 px
