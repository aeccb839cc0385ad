"""The value types settings accept beyond plain numbers, each with its validator; a validator's
docstring is what README's configuration table says the setting accepts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

from shared.errors import InvalidArgument
from shared.redis_url import check_redis_url

MIN_TOKEN_LENGTH = 16  # a bearer secret short enough to guess is no secret


def _path(raw: Path | None) -> Path | None:
    """a path (`~` expands)"""
    return raw.expanduser() if raw is not None else None


def _split_schedule(raw: object) -> object:
    """comma-separated seconds, e.g. 5,300,1800"""
    if not isinstance(raw, str):
        return raw
    try:
        return tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise InvalidArgument("expected comma-separated seconds, e.g. 5,300,1800") from None


def _no_negative(values: tuple[float, ...]) -> tuple[float, ...]:
    if not all(math.isfinite(value) for value in values):
        raise InvalidArgument("delays must be finite numbers of seconds (not nan or inf)")
    if any(value < 0 for value in values):
        raise InvalidArgument("delays cannot be negative")
    return values


def _basic_auth(raw: str | None) -> str | None:
    """user:password"""
    if raw is not None:
        user, sep, password = raw.partition(":")
        if not sep or not user or not password:
            raise InvalidArgument("expected user:password")
    return raw


def _token(raw: str | None) -> str | None:
    """at least 16 printable ASCII characters"""
    if raw is not None and (len(raw) < MIN_TOKEN_LENGTH or not all("!" <= c <= "~" for c in raw)):
        raise InvalidArgument(f"expected at least {MIN_TOKEN_LENGTH} printable ASCII characters")
    return raw


def _flag(raw: object) -> object:
    """1 or 0 (also true/false, yes/no, on/off)"""
    if not isinstance(raw, str):
        return raw
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise InvalidArgument("expected 1 or 0")


def _one_of(*choices: str, upper: bool = False) -> AfterValidator:
    """A validator that accepts these words in any case and keeps them in the declared case."""
    expected = f"{', '.join(choices[:-1])} or {choices[-1]}"

    def check(raw: str) -> str:
        value = raw.upper() if upper else raw.lower()
        if value not in choices:
            raise InvalidArgument(f"expected {expected}")
        return value

    check.__doc__ = expected
    return AfterValidator(check)


Flag = Annotated[bool, BeforeValidator(_flag)]
RedisUrl = Annotated[str, AfterValidator(check_redis_url)]
HomePath = Annotated[Path, AfterValidator(_path)]
OptionalPath = Annotated[Path | None, AfterValidator(_path)]
Schedule = Annotated[
    tuple[float, ...], BeforeValidator(_split_schedule), AfterValidator(_no_negative)
]
BasicAuth = Annotated[str | None, AfterValidator(_basic_auth)]
Token = Annotated[str | None, AfterValidator(_token)]
Precision = Annotated[str, _one_of("auto", "fp32", "fp16", "bf16", "int8")]
LogLevel = Annotated[str, _one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", upper=True)]
LogFormat = Annotated[str, _one_of("text", "json")]
