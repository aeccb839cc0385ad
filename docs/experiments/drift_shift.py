"""What a shifted stream does to the drift metrics' inputs on a trained version: the cascade is
run in-process on catalog photos and on shifted copies of them (a flat grey photo, uniform
noise, a heavy blur, two photos blended, a dark and noisy copy), and each stream's mean top
confidence (what skuai_top_confidence averages), its decisions (skuai_decisions_total) and the
share of its most predicted SKU (the top of skuai_sku_share) are printed, one JSON line each.

The tests' session version is barely trained (confidences near 1/6 on any input), so this runs
on a version of your own, e.g. the one `skuai demo` or `skuai bench` trains:

    python docs/experiments/drift_shift.py REGISTRY CATALOG [--photos 60] [--seed 0]

The catalog photos may include the version's training photos, so the first line is an upper
bound of what held-out photos of the same catalog would score."""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from shared.images import decode  # noqa: E402
from training.cascade import Cascade  # noqa: E402

Shift = Callable[[Image.Image, Image.Image, np.random.Generator], np.ndarray]
SHIFTS: dict[str, Shift] = {
    "catalog": lambda im, other, rng: np.asarray(im, dtype=float),
    "blank": lambda im, other, rng: np.full((im.height, im.width, 3), 128.0),
    "noise": lambda im, other, rng: rng.integers(0, 256, (im.height, im.width, 3)).astype(float),
    "blur": lambda im, other, rng: np.asarray(im.filter(ImageFilter.GaussianBlur(6)), dtype=float),
    "blended": lambda im, other, rng: (np.asarray(im, float) + np.asarray(other, float)) / 2,
    "dark+noise": lambda im, other, rng: (
        np.asarray(im, float) * 0.3 + rng.normal(0, 40, (im.height, im.width, 3))
    ),
}


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "PNG")
    return out.getvalue()


def measure(registry: Path, catalog: Path, photos: int, seed: int) -> list[dict[str, object]]:
    """One row per stream: photos, mean and spread of top confidence, decisions, top share."""
    version = (registry / "ACTIVE").read_text().strip()
    cascade = Cascade.load(registry / version, version=version)
    rng = np.random.default_rng(seed)
    files = sorted(p for p in catalog.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    chosen = [files[i] for i in rng.permutation(len(files))[:photos]]
    rows = []
    for name, shift in SHIFTS.items():
        batch = []
        for i, path in enumerate(chosen):
            image = Image.open(path).convert("RGB")
            other = Image.open(chosen[(i + 7) % len(chosen)]).convert("RGB").resize(image.size)
            data = _png(shift(image, other, rng))
            batch.append(decode(data, size=cascade.input_size, max_pixels=10**8))
        results = cascade.predict(np.stack(batch))
        confidence = np.array([r["sku"]["confidence"] for r in results])
        top = Counter(r["sku"]["label"] for r in results).most_common(1)[0][1]
        rows.append(
            {
                "stream": name,
                "version": version,
                "photos": len(results),
                "mean_top_confidence": round(float(confidence.mean()), 3),
                "sd": round(float(confidence.std()), 3),
                "decisions": dict(Counter(r["decision"] for r in results)),
                "top_sku_share": round(top / len(results), 2),
            }
        )
    return rows


def main() -> None:
    """Parse the arguments, measure, print one JSON line per stream."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("registry", type=Path)
    parser.add_argument("catalog", type=Path)
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for row in measure(args.registry, args.catalog, args.photos, args.seed):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
