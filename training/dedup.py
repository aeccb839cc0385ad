"""Exact and near-duplicate photos: a SHA-256 of the bytes, a perceptual hash of the pixels, and
the groups of copies that a split must keep together.

The hash is imagehash's pHash with a 16x16 DCT (256 bits) of the decoded, padded image. It was
chosen on measurements (docs/training.md, "Duplicates and the split"): on a synthetic catalog, JPEG
(quality 30-95), WEBP and PNG re-encodings and 0.5x-2x resizes of a photo stay within
`NEAR_DISTANCE` bits of it, while distinct photos of one SKU stay further apart; the 64-bit pHash,
dHash, aHash and wHash overlapped there."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import imagehash
import numpy as np
from PIL import Image
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

HASH_SIZE = 16  # pHash side: 16 x 16 = 256 bits
HASH_INPUT = 128  # side (pixels) of the decoded, padded square the hash is computed from
NEAR_DISTANCE = 30  # at most this many of the 256 bits differ between a photo and its copies
_CHUNK_CELLS = 1 << 21  # pairwise distances computed this many at a time (bounded memory)


def sha256_of(data: bytes) -> str:
    """The hex SHA-256 of a file's bytes: equal for byte-identical copies."""
    return hashlib.sha256(data).hexdigest()


def perceptual_hash(pixels: np.ndarray) -> str:
    """The pHash (hex, 64 digits) of a decoded RGB uint8 image."""
    return str(imagehash.phash(Image.fromarray(pixels), hash_size=HASH_SIZE))


def distance(a: str, b: str) -> int:
    """Hamming distance between two perceptual hashes."""
    return int(imagehash.hex_to_hash(a) - imagehash.hex_to_hash(b))


def near_groups(hashes: Sequence[str], *, max_distance: int = NEAR_DISTANCE) -> list[int]:
    """A group number per hash: hashes within `max_distance` bits of each other, directly or
    through a chain of such pairs, share one. Numbers follow the order of first appearance."""
    n = len(hashes)
    if n == 0:
        return []
    i, j, _ = close_pairs(hashes, hashes, max_distance=max_distance, triangle=True)
    graph = coo_array((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    renumbered: dict[int, int] = {}
    return [renumbered.setdefault(int(label), len(renumbered)) for label in labels]


def close_pairs(
    left: Sequence[str],
    right: Sequence[str],
    *,
    max_distance: int = NEAR_DISTANCE,
    triangle: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, distance) for every left[i], right[j] within `max_distance` bits (`triangle`:
    left is right, and only i < j is wanted). Blocks of rows keep memory bounded; one 64-bit
    word at a time keeps the intermediate arrays small: 20,000 hashes take about 5 s."""
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if left and right:
        a, b = _words(left), _words(right)
        columns = [np.ascontiguousarray(b[:, k]) for k in range(b.shape[1])]
        step = max(1, _CHUNK_CELLS // len(b))
        for start in range(0, len(a), step):
            block = a[start : start + step]
            first = start if triangle else 0  # columns before the block's rows: seen already
            counts = np.zeros((len(block), len(b) - first), dtype=np.uint16)
            for k, column in enumerate(columns):
                counts += np.bitwise_count(block[:, k, None] ^ column[None, first:])
            i, j = np.nonzero(counts <= max_distance)
            keep = i + start < j + first if triangle else slice(None)
            i, j = i[keep], j[keep]
            found.append((i + start, j + first, counts[i, j].astype(np.int64)))
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    i, j, d = (np.concatenate(column) for column in zip(*found, strict=True))
    return i, j, d


def _words(hashes: Sequence[str]) -> np.ndarray:
    """Hex hashes as rows of uint64 words."""
    return np.stack([np.frombuffer(bytes.fromhex(h.rjust(64, "0")), np.uint64) for h in hashes])
