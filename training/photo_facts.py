"""What `skuai data check` learns about each file of a dataset: its hashes, format and size, or
why it cannot be used. Files are opened with the serving decoder, so a file the check accepts is
one training and the workers can read."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from shared.errors import InvalidImage, UnsupportedMediaType
from shared.image_formats import IMAGE_SUFFIXES, register_plugins
from shared.images import decode, sniff
from training.dataset import Sample
from training.dedup import HASH_INPUT, perceptual_hash, sha256_of
from training.loading import MAX_TRAINING_PIXELS

NOT_IMAGE = "not_image"  # the content is no accepted image format
UNREADABLE = "unreadable"  # cannot be read, or an image that does not decode (truncated, corrupt)


@dataclass(frozen=True)
class PhotoFacts:
    """One file of a SKU folder: its hashes, format and size, or the problem that rules it out."""

    path: str  # relative to the dataset folder, with forward slashes
    model: str
    sku: str
    sha256: str | None = None
    phash: str | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    problem: str | None = None  # NOT_IMAGE or UNREADABLE
    reason: str | None = None  # the problem in words

    @property
    def usable(self) -> bool:
        """True when the file decodes into an image training can use."""
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        """The facts as JSON-ready values."""
        return asdict(self)


def inspect_all(
    samples: Sequence[Sample],
    data_dir: Path,
    *,
    workers: int = 4,
    progress: Callable[[int], None] | None = None,
) -> list[PhotoFacts]:
    """The facts of every file, in order (threads: Pillow releases the GIL while decoding)."""

    def one(sample: Sample) -> PhotoFacts:
        try:
            return inspect_file(sample, data_dir)
        finally:
            if progress is not None:
                progress(1)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, samples))


def inspect_file(sample: Sample, data_dir: Path) -> PhotoFacts:
    """Read, sniff, measure and hash one file; a file that fails says why instead of raising."""
    register_plugins()  # HEIC/HEIF (once per process)
    named = PhotoFacts(sample.path.relative_to(data_dir).as_posix(), sample.model, sample.sku)
    try:
        data = sample.path.read_bytes()
    except OSError as exc:
        return _problem(named, UNREADABLE, f"cannot be read ({exc.strerror or exc})")
    facts = PhotoFacts(**{**named.to_dict(), "sha256": sha256_of(data)})
    try:
        image_format = sniff(data, max_pixels=MAX_TRAINING_PIXELS)
    except UnsupportedMediaType as exc:  # content of another kind
        return _problem(facts, NOT_IMAGE, exc.message)
    except InvalidImage as exc:  # a broken (or empty, or enormous) file of an accepted format
        return _problem(facts, UNREADABLE, exc.message)
    if sample.path.suffix.lower() not in IMAGE_SUFFIXES:
        return _problem(
            facts, NOT_IMAGE, f"a {image_format} image whose name does not end in an image suffix"
        )
    try:
        width, height = _size(data)
        pixels = decode(data, size=HASH_INPUT, max_pixels=MAX_TRAINING_PIXELS)
    except (InvalidImage, UnsupportedMediaType, OSError) as exc:
        return _problem(facts, UNREADABLE, getattr(exc, "message", None) or str(exc))
    return PhotoFacts(
        **{
            **facts.to_dict(),
            "phash": perceptual_hash(pixels),
            "format": image_format,
            "width": width,
            "height": height,
        }
    )


def _size(data: bytes) -> tuple[int, int]:
    """Width and height as stored (before any EXIF rotation), from the header only."""
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def _problem(facts: PhotoFacts, problem: str, reason: str) -> PhotoFacts:
    return PhotoFacts(**{**facts.to_dict(), "problem": problem, "reason": reason})
