"""Files of a live version that readers may open at any moment (metrics.json while the API lists
versions, open_world.json while a worker loads one): each is written beside its final name and
moved over it, so a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write` to a temporary file in `path`'s folder (same suffix, as numpy's savez adds one
    otherwise), then replace `path` with it; the temporary file is removed if anything fails."""
    partial = path.with_name(f".{path.stem}.{os.getpid()}{path.suffix}")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_json_atomically(path: Path, document: Any) -> None:
    """`document` as indented JSON at `path`, replacing it whole."""
    text = json.dumps(document, indent=2) + "\n"
    replace_atomically(path, lambda partial: partial.write_text(text))
