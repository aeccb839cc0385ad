"""`skuai config`: the files generated from the settings declaration."""

from __future__ import annotations

import click


@click.group()
def config() -> None:
    """Files generated from the settings declaration (shared/settings.py)."""


@config.command()
def write() -> None:
    """Regenerate README's configuration table and compose's list of container settings."""
    from skuai.config_files import ROOT, write

    changed = write()
    for path in changed:
        click.echo(f"updated {path.relative_to(ROOT)}")
    if not changed:
        click.echo("up to date")
