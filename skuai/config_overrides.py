"""`--config FILE` for the training commands: the file's settings, overridden by the options
given on the command line (not by options left at their defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from training.config import TrainConfig
from training.config_file import config_from, read_config_file


def explicit_settings(config_file: Path | None, options: dict[str, Any]) -> TrainConfig:
    """TrainConfig of the command's options, on top of `config_file`'s settings when given."""
    if config_file is None:
        return TrainConfig(**options)
    context = click.get_current_context()
    given = {
        key: value
        for key, value in options.items()
        if context.get_parameter_source(key) not in (ParameterSource.DEFAULT, None)
    }
    return config_from(read_config_file(config_file), given)
