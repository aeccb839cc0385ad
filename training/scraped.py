"""Turn a clean synthetic catalog into one that looks scraped from retail sites: photos re-saved in
the formats shops and phones use, byte-identical, re-encoded and resized copies, a SKU left with
one photo, a truncated download and a stray non-image file. Deterministic by seed.

It exists so that the data check, the grouped split and training can be tried on the mess real
photo folders hold, with a known answer: `skuai synth OUT ... --scraped`."""

from __future__ import annotations

import io
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from shared.errors import InvalidArgument
from shared.image_formats import register_plugins

# Pillow format, suffix, share of photos: roughly what a scrape of retail sites and phones holds.
FORMAT_MIX = (
    ("JPEG", ".jpg", 0.45),
    ("WEBP", ".webp", 0.2),
    ("AVIF", ".avif", 0.12),
    ("PNG", ".png", 0.1),
    ("HEIF", ".heic", 0.07),
    ("TIFF", ".tif", 0.03),
    ("BMP", ".bmp", 0.02),
    ("GIF", ".gif", 0.01),
)
COPY_KINDS = ("identical", "re-encoded", "resized")
MESS_FILE = "scraped.json"


@dataclass(frozen=True)
class Mess:
    """What `roughen` did, written to OUT/scraped.json so tests and reports know the answer."""

    formats: dict[str, int]
    copies: dict[str, list[str]]  # copy -> [original, kind]
    single_photo_sku: str
    truncated: str
    not_an_image: str


def roughen(root: Path, *, seed: int, copy_share: float = 0.1) -> Mess:
    """Rewrite every photo under `root/<model>/<sku>/` in place as described in the module doc."""
    if not 0 <= copy_share <= 1:
        raise InvalidArgument(f"the share of copies must be in [0, 1] (got {copy_share})")
    register_plugins()
    rng = random.Random(f"scraped:{seed}")
    sku_dirs = sorted(p for p in root.glob("*/*") if p.is_dir())
    if not sku_dirs:
        raise InvalidArgument(f"{root} has no DATA/<model>/<sku>/ folders to roughen")
    formats: dict[str, int] = {}
    photos: list[Path] = []
    for sku_dir in sku_dirs:
        for path in sorted(p for p in sku_dir.iterdir() if p.is_file()):
            fmt, suffix = _pick_format(rng)
            image = _load(path)
            path.unlink()
            target = path.with_suffix(suffix)
            target.write_bytes(_encode(image, fmt, quality=rng.randint(70, 95)))
            formats[fmt] = formats.get(fmt, 0) + 1
            photos.append(target)
    single = min(sku_dirs, key=lambda d: (len(list(d.iterdir())), d.name))
    for extra in sorted(single.iterdir())[1:]:
        extra.unlink()
        photos.remove(extra)
    copies = {}
    for original in rng.sample(photos, round(copy_share * len(photos))):
        if original.parent == single:
            continue
        kind = rng.choice(COPY_KINDS)
        copy = original.with_name(f"{original.stem}-copy{_copy_suffix(kind, original)}")
        copy.write_bytes(_copy_bytes(original, kind, rng))
        copies[_rel(copy, root)] = [_rel(original, root), kind]
    victim = rng.choice([p for p in photos if p.parent != single])
    truncated = victim.with_name(f"{victim.stem}-download.jpg")
    truncated.write_bytes(_encode(_load(victim), "JPEG", quality=90)[:600])
    stray = rng.choice([d for d in sku_dirs if d != single]) / "product-page.html"
    stray.write_text("<html><body>Sold out</body></html>\n")
    mess = Mess(
        formats=formats,
        copies=copies,
        single_photo_sku=_rel(single, root),
        truncated=_rel(truncated, root),
        not_an_image=_rel(stray, root),
    )
    (root / MESS_FILE).write_text(json.dumps(asdict(mess), indent=2) + "\n")
    return mess


def _pick_format(rng: random.Random) -> tuple[str, str]:
    fmt, suffix, _ = rng.choices(FORMAT_MIX, weights=[share for *_, share in FORMAT_MIX])[0]
    return fmt, suffix


def _load(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _encode(image: Image.Image, fmt: str, *, quality: int = 90) -> bytes:
    out = io.BytesIO()
    options = {"quality": quality} if fmt in ("JPEG", "WEBP", "AVIF", "HEIF") else {}
    image.save(out, format=fmt, **options)
    return out.getvalue()


def _copy_suffix(kind: str, original: Path) -> str:
    return original.suffix if kind == "identical" else ".jpg"


def _copy_bytes(original: Path, kind: str, rng: random.Random) -> bytes:
    """A byte-identical copy, a JPEG re-encoding at a lower quality, or a resized JPEG."""
    if kind == "identical":
        return original.read_bytes()
    image = _load(original)
    if kind == "resized":
        scale = rng.choice((0.5, 0.75, 1.5, 2.0))
        side = (max(16, round(image.width * scale)), max(16, round(image.height * scale)))
        image = image.resize(side, Image.Resampling.LANCZOS)
    return _encode(image, "JPEG", quality=rng.randint(40, 85))


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
