"""Training configs as JSON files: `skuai tune`'s best.json, or a version's config.json, read
back for `skuai train DATA --config FILE` with clear errors, and the name of the version a config
would produce (a hash of its settings, which `skuai tune` records for every trial)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from shared.errors import InvalidArgument
from training.config import TrainConfig

# Keys a version's config.json records beside the settings: ignored when it is read back.
RECORDED_ONLY = frozenset({"trained_in", "data_dir", "lineage"})
_TYPES: dict[str, tuple[type, ...]] = {"float": (int, float), "int": (int,), "str": (str,)}


def config_fields() -> dict[str, str]:
    """TrainConfig's field names with their declared types (as strings)."""
    return {f.name: str(f.type) for f in fields(TrainConfig)}


def read_config_file(path: Path) -> dict[str, Any]:
    """The TrainConfig settings of a JSON file: a flat object of settings, or one with them under
    "config" (best.json). Unknown keys and wrong types are refused, naming the key."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidArgument(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"--config {path}: not a readable JSON file ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]
    if not isinstance(data, dict):
        raise InvalidArgument(f"--config {path}: expected a JSON object of training settings")
    known = config_fields()
    settings = {k: v for k, v in data.items() if k not in RECORDED_ONLY}
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise InvalidArgument(
            f"--config {path}: unknown setting{'s' * (len(unknown) > 1)} {', '.join(unknown)} "
            f"(known: {', '.join(known)})"
        )
    for key, value in settings.items():
        _check_type(path, key, value, known[key])
    return settings


def _check_type(path: Path, key: str, value: Any, declared: str) -> None:
    """Refuse a value whose JSON type does not fit the field's declared type."""
    if value is None and "None" in declared:
        return
    if "bool" in declared:
        allowed: tuple[type, ...] = (bool,)
    else:
        allowed = _TYPES.get(declared.split(" ")[0], (object,))
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        raise InvalidArgument(f"--config {path}: {key} must be {declared} (got {value!r})")


def config_from(settings: dict[str, Any], overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A validated TrainConfig from a file's settings and explicit overrides (the command line)."""
    return replace(TrainConfig(**settings), **(overrides or {}))


def config_name(config: TrainConfig) -> str:
    """A short, stable name of the settings: equal configs, equal names (the seed included)."""
    text = json.dumps(config.to_dict(), sort_keys=True)
    return "cfg-" + hashlib.sha256(text.encode()).hexdigest()[:10]
