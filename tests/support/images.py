"""Images taken from the tiny catalog."""

from __future__ import annotations

from pathlib import Path


def catalog_images(catalog: Path, count: int | None = None) -> list[Path]:
    """The catalog's first `count` images (all of them by default), in a stable order."""
    return sorted(catalog.rglob("*.png"))[:count]


def sample_image(catalog: Path) -> Path:
    """The first image of the catalog."""
    return catalog_images(catalog, 1)[0]


def distinct_images(catalog: Path, count: int, salt: int = 0) -> list[tuple[str, bytes]]:
    """`count` different files named `i.png`, and different again for another `salt` (PNG
    decoders ignore bytes after the end chunk)."""
    sources = catalog_images(catalog)
    return [
        (f"{i}.png", sources[i % len(sources)].read_bytes() + bytes([salt]) + i.to_bytes(4, "big"))
        for i in range(count)
    ]
