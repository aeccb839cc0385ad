"""The photos an edge export needs from the version's own split: training photos to calibrate
int8, test photos to check the exported files against the Keras version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.errors import ConfigError
from training.edge_export import CALIBRATION_IMAGES
from training.labels import Labels
from training.split_record import version_part


def version_photos(folder: Path, part: str, *, spread: bool = False) -> Any:
    """Decoded photos of the version's `part` (train or test) as an ArraySet; `spread`: at
    most CALIBRATION_IMAGES, evenly spread over the part (every SKU gets some)."""
    from training.loading import load_arrays

    config = json.loads((folder / "config.json").read_text())
    data_dir = Path(config["data_dir"]) if config.get("data_dir") else None
    if data_dir is None or not data_dir.is_dir():
        raise ConfigError(
            f"the dataset of {folder.name} ({data_dir or 'unknown'}) is not here: its {part} "
            "photos are needed (pass --no-check without --int8 to export without them)"
        )
    samples = version_part(folder, data_dir, part, seed=int(config["seed"]))
    if spread:
        samples = samples[:: max(1, len(samples) // CALIBRATION_IMAGES)][:CALIBRATION_IMAGES]
    labels = Labels.load(folder / "labels.json")
    return load_arrays(samples, labels, size=int(config["input_size"]))
