"""The files generated from the settings declaration in shared/settings.py: README's
configuration table and docker-compose.yml's list of variables every skuai container gets.

`skuai config write` rewrites both; tests/test_settings.py fails while either is out of date."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import AfterValidator, BeforeValidator
from pydantic.fields import FieldInfo

from shared.errors import ConfigError
from shared.settings import Settings, as_text, variable

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = "skuai config write"
TABLE_START = f"<!-- generated from shared/settings.py by `{REGENERATE}`; do not edit -->"
TABLE_END = "<!-- end of generated settings table -->"
COMPOSE_START = "x-skuai-env: &skuai-env"
_KINDS = {int: "whole number", float: "number", bool: "1 or 0", str: "text", Path: "path"}


def table(settings: type[Settings] = Settings) -> str:
    """README's configuration table: one row per setting, in declaration order."""
    rows = [
        "| Variable | Default | Accepts | Meaning |",
        "|---|---|---|---|",
    ]
    for name, info in settings.declared().items():
        rows.append(
            f"| `{variable(name)}` | {_default(info)} | {_accepts(info)} | {info.description} |"
        )
    return "\n".join(rows)


def compose_block(settings: type[Settings] = Settings) -> str:
    """The `x-skuai-env` block: the settings containers get, each passed through from the shell
    or .env unless the declaration gives compose a value."""
    lines = [COMPOSE_START]
    for name, info in settings.declared().items():
        extra = _extra(info)
        if extra["containers"]:
            lines.append(f"  {variable(name)}:{' ' + extra['compose'] if extra['compose'] else ''}")
    return "\n".join(lines)


def updated_readme(text: str, settings: type[Settings] = Settings) -> str:
    """README.md's text with the table between its markers regenerated."""
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise ConfigError(f"README.md lacks the markers {TABLE_START!r} ... {TABLE_END!r}")
    return text[: start + len(TABLE_START)] + "\n" + table(settings) + "\n" + text[end:]


def updated_compose(text: str, settings: type[Settings] = Settings) -> str:
    """docker-compose.yml's text with the `x-skuai-env` block (up to its blank line) regenerated."""
    block = re.compile(rf"^{re.escape(COMPOSE_START)}\n(?:[ #].*\n)*", re.MULTILINE)
    if not block.search(text):
        raise ConfigError(f"docker-compose.yml has no {COMPOSE_START!r} block")
    return block.sub(lambda _: compose_block(settings) + "\n", text, count=1)


def stale(root: Path = ROOT, settings: type[Settings] = Settings) -> list[Path]:
    """The generated files under `root` that differ from what the declaration gives."""
    generated = _generated(root, settings)
    return [path for path, text in generated.items() if path.read_text() != text]


def write(root: Path = ROOT, settings: type[Settings] = Settings) -> list[Path]:
    """Regenerate the files under `root` that are out of date; return them."""
    changed = stale(root, settings)
    for path, text in _generated(root, settings).items():
        if path in changed:
            path.write_text(text)
    return changed


def _generated(root: Path, settings: type[Settings]) -> dict[Path, str]:
    readme, compose = root / "README.md", root / "docker-compose.yml"
    return {
        readme: updated_readme(readme.read_text(), settings),
        compose: updated_compose(compose.read_text(), settings),
    }


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _default(info: FieldInfo) -> str:
    shown = _extra(info).get("shown")
    if shown is None and info.default is None:
        return "unset"
    return f"`{shown if shown is not None else as_text(info.default)}`"


def _accepts(info: FieldInfo) -> str:
    """What a value must be: the validator's docstring, else the type and its bounds."""
    for item in info.metadata:
        if isinstance(item, AfterValidator | BeforeValidator) and item.func.__doc__:
            return item.func.__doc__.strip()
    kind = info.annotation if isinstance(info.annotation, type) else str
    words = _KINDS.get(kind, "text")
    for item in info.metadata:
        if (above := getattr(item, "gt", None)) is not None:
            words += f" above {above:g}"
        if (least := getattr(item, "ge", None)) is not None:
            words += f", {least:g} or more"
    return words
