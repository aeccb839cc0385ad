"""The model registry: `REGISTRY/<version>/` folders and `REGISTRY/ACTIVE` naming the live one.

No TensorFlow here: the CLI and the API read the registry without loading any model."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import ConfigError, ModelNotFound, VersionNotFound
from training.labels import Labels

ACTIVE_FILE = "ACTIVE"
REQUIRED_FILES = ("stage1.keras", "stage2.keras", "labels.json", "metrics.json", "config.json")
_VERSION = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class VersionInfo:
    """One registered version: its name, folder, metrics and config."""

    name: str
    path: Path
    active: bool
    metrics: dict[str, Any]
    config: dict[str, Any]

    @property
    def lineage(self) -> dict[str, Any] | None:
        """Where the version comes from (training.lineage: parent, SKUs and models added and
        removed, data check summary), or None for a version written before lineage existed."""
        found = self.metrics.get("lineage", self.config.get("lineage"))
        return found if isinstance(found, dict) else None


class Registry:
    """A folder of model versions; the active one is named in `ACTIVE`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def versions(self) -> list[VersionInfo]:
        """Every complete version, oldest first."""
        if not self.root.is_dir():
            return []
        active = self.active()
        names = sorted(
            (p.name for p in self.root.iterdir() if _VERSION.match(p.name) and self._complete(p)),
            key=_version_number,
        )
        return [self._info(name, name == active) for name in names]

    def active(self) -> str | None:
        """The active version's name, or None when nothing was activated yet."""
        try:
            name = (self.root / ACTIVE_FILE).read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

    def require_active(self) -> str:
        """The active version, or ModelNotFound with the fix in the message."""
        name = self.active()
        if name is None or not self._complete(self.root / name):
            raise ModelNotFound(
                f"no active model in {self.root}; train one with `skuai train DATA --registry "
                f"{self.root}` or activate one with `skuai models activate VERSION`"
            )
        return name

    def path(self, version: str) -> Path:
        """The folder of an existing, complete version."""
        folder = self.root / version
        if not _VERSION.match(version) or not self._complete(folder):
            raise VersionNotFound(f"no model version {version!r} in {self.root}")
        return folder

    def labels(self, version: str) -> Labels:
        """The label space of a version."""
        return Labels.load(self.path(version) / "labels.json")

    def activate(self, version: str) -> None:
        """Make `version` the active one, atomically (readers never see a half-written file)."""
        self.path(version)
        tmp = self.root / f".{ACTIVE_FILE}.{os.getpid()}"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.root / ACTIVE_FILE)

    def new_version(self) -> tuple[str, Path]:
        """Reserve the next version folder (`v1`, `v2`, ...); safe against concurrent trainers."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the registry {self.root}: {exc.strerror}") from None
        if not os.access(self.root, os.W_OK):
            raise ConfigError(f"the registry {self.root} is not writable")
        taken = [_version_number(p.name) for p in self.root.iterdir() if _VERSION.match(p.name)]
        number = max(taken, default=0) + 1
        while True:
            folder = self.root / f"v{number}"
            try:
                folder.mkdir()
            except FileExistsError:
                number += 1
                continue
            return folder.name, folder

    def _complete(self, folder: Path) -> bool:
        return all((folder / name).is_file() for name in REQUIRED_FILES)

    def _info(self, name: str, active: bool) -> VersionInfo:
        folder = self.root / name
        return VersionInfo(
            name=name,
            path=folder,
            active=active,
            metrics=json.loads((folder / "metrics.json").read_text()),
            config=json.loads((folder / "config.json").read_text()),
        )


def _version_number(name: str) -> int:
    match = _VERSION.match(name)
    return int(match.group(1)) if match else -1
