"""What every command module shares: the settings, and the one-line exit for user errors."""

from __future__ import annotations

import sys

import click

from shared.settings import Settings


def fail(message: str) -> None:
    """Print one line on stderr and exit 1: the answer to every error a user can cause."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def settings() -> Settings:
    """The validated settings (ConfigError names a bad SKUAI_* variable)."""
    return Settings.from_env()
