"""The one settings object, built from `SKUAI_*` environment variables and validated at start-up."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from shared import defaults
from shared.errors import ConfigError, InvalidArgument

T = TypeVar("T")
PREFIX = "SKUAI_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
MIN_TOKEN_LENGTH = 16  # a bearer secret short enough to guess is no secret


@dataclass(frozen=True)
class Settings:
    """Every tunable of the service; build it with `Settings.from_env()`."""

    redis_url: str = defaults.REDIS_URL
    home: Path = field(default_factory=lambda: Path(defaults.HOME).expanduser())
    registry: Path | None = None
    result_ttl: int = defaults.RESULT_TTL
    image_ttl: int = defaults.IMAGE_TTL
    max_image_bytes: int = defaults.MAX_IMAGE_BYTES
    max_image_pixels: int = defaults.MAX_IMAGE_PIXELS
    max_batch_images: int = defaults.MAX_BATCH_IMAGES
    max_request_bytes: int = defaults.MAX_REQUEST_BYTES
    max_archive_bytes: int = defaults.MAX_ARCHIVE_BYTES
    max_json_bytes: int = defaults.MAX_JSON_BYTES
    max_archive_seconds: float = defaults.MAX_ARCHIVE_SECONDS
    max_queued: int = defaults.MAX_QUEUED
    rate_limit: float = defaults.RATE_LIMIT
    rate_burst: int = defaults.RATE_BURST
    max_waits_per_key: int = defaults.MAX_WAITS_PER_KEY
    client_timeout: int = defaults.CLIENT_TIMEOUT
    allow_private_urls: bool = False
    webhook_retry_schedule: tuple[float, ...] = defaults.WEBHOOK_RETRY_SCHEDULE
    webhook_timeout: int = defaults.WEBHOOK_TIMEOUT
    webhook_endpoint_concurrency: int = defaults.WEBHOOK_ENDPOINT_CONCURRENCY
    visibility_timeout: int = defaults.VISIBILITY_TIMEOUT
    redis_timeout: float = defaults.REDIS_TIMEOUT
    upload_timeout: int = defaults.UPLOAD_TIMEOUT
    chunk_size: int = defaults.CHUNK_SIZE
    batch_wait_ms: int = defaults.BATCH_WAIT_MS
    worker_max_memory_mb: int = defaults.WORKER_MAX_MEMORY_MB
    inference_precision: str = "auto"  # auto: fp16 on a GPU, fp32 on the CPU
    flower_basic_auth: str | None = None
    metrics_token: str | None = None  # unset: /metrics answers loopback callers only
    log_level: str = defaults.LOG_LEVEL
    log_format: str = "text"

    @property
    def registry_dir(self) -> Path:
        """The model registry: `SKUAI_REGISTRY`, or `registry/` under `SKUAI_HOME`."""
        return self.registry if self.registry is not None else self.home / "registry"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every `SKUAI_*` variable; raise ConfigError naming the bad one."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        settings = cls(
            redis_url=reader.get("REDIS_URL", _redis_url, defaults.REDIS_URL),
            home=reader.get("HOME", _path, Path(defaults.HOME).expanduser()),
            registry=reader.get("REGISTRY", _path, None),
            result_ttl=reader.get("RESULT_TTL", _positive_int, defaults.RESULT_TTL),
            image_ttl=reader.get("IMAGE_TTL", _positive_int, defaults.IMAGE_TTL),
            max_image_bytes=reader.get("MAX_IMAGE_BYTES", _positive_int, defaults.MAX_IMAGE_BYTES),
            max_image_pixels=reader.get(
                "MAX_IMAGE_PIXELS", _positive_int, defaults.MAX_IMAGE_PIXELS
            ),
            max_batch_images=reader.get(
                "MAX_BATCH_IMAGES", _positive_int, defaults.MAX_BATCH_IMAGES
            ),
            max_request_bytes=reader.get(
                "MAX_REQUEST_BYTES", _positive_int, defaults.MAX_REQUEST_BYTES
            ),
            max_archive_bytes=reader.get(
                "MAX_ARCHIVE_BYTES", _positive_int, defaults.MAX_ARCHIVE_BYTES
            ),
            max_archive_seconds=reader.get(
                "MAX_ARCHIVE_SECONDS", _positive_float, defaults.MAX_ARCHIVE_SECONDS
            ),
            max_json_bytes=reader.get("MAX_JSON_BYTES", _positive_int, defaults.MAX_JSON_BYTES),
            max_queued=reader.get("MAX_QUEUED", _positive_int, defaults.MAX_QUEUED),
            rate_limit=reader.get("RATE_LIMIT", _positive_float, defaults.RATE_LIMIT),
            rate_burst=reader.get("RATE_BURST", _positive_int, defaults.RATE_BURST),
            max_waits_per_key=reader.get(
                "MAX_WAITS_PER_KEY", _positive_int, defaults.MAX_WAITS_PER_KEY
            ),
            client_timeout=reader.get("CLIENT_TIMEOUT", _positive_int, defaults.CLIENT_TIMEOUT),
            allow_private_urls=reader.get("ALLOW_PRIVATE_URLS", _bool, False),
            webhook_retry_schedule=reader.get(
                "WEBHOOK_RETRY_SCHEDULE", _schedule, defaults.WEBHOOK_RETRY_SCHEDULE
            ),
            webhook_timeout=reader.get("WEBHOOK_TIMEOUT", _positive_int, defaults.WEBHOOK_TIMEOUT),
            webhook_endpoint_concurrency=reader.get(
                "WEBHOOK_ENDPOINT_CONCURRENCY",
                _positive_int,
                defaults.WEBHOOK_ENDPOINT_CONCURRENCY,
            ),
            visibility_timeout=reader.get(
                "VISIBILITY_TIMEOUT", _positive_int, defaults.VISIBILITY_TIMEOUT
            ),
            redis_timeout=reader.get("REDIS_TIMEOUT", _positive_float, defaults.REDIS_TIMEOUT),
            upload_timeout=reader.get("UPLOAD_TIMEOUT", _positive_int, defaults.UPLOAD_TIMEOUT),
            chunk_size=reader.get("CHUNK_SIZE", _positive_int, defaults.CHUNK_SIZE),
            batch_wait_ms=reader.get("BATCH_WAIT_MS", _non_negative_int, defaults.BATCH_WAIT_MS),
            inference_precision=reader.get("INFERENCE_PRECISION", _precision, "auto"),
            worker_max_memory_mb=reader.get(
                "WORKER_MAX_MEMORY_MB", _positive_int, defaults.WORKER_MAX_MEMORY_MB
            ),
            flower_basic_auth=reader.get("FLOWER_BASIC_AUTH", _basic_auth, None),
            metrics_token=reader.get("METRICS_TOKEN", _token, None),
            log_level=reader.get("LOG_LEVEL", _log_level, defaults.LOG_LEVEL),
            log_format=reader.get("LOG_FORMAT", _log_format, "text"),
        )
        return settings

    def env(self) -> dict[str, str]:
        """These settings as `SKUAI_*` variables, for the processes a command starts."""
        values = {
            "REDIS_URL": self.redis_url,
            "HOME": str(self.home),
            "RESULT_TTL": str(self.result_ttl),
            "IMAGE_TTL": str(self.image_ttl),
            "MAX_IMAGE_BYTES": str(self.max_image_bytes),
            "MAX_IMAGE_PIXELS": str(self.max_image_pixels),
            "MAX_BATCH_IMAGES": str(self.max_batch_images),
            "MAX_REQUEST_BYTES": str(self.max_request_bytes),
            "MAX_ARCHIVE_BYTES": str(self.max_archive_bytes),
            "MAX_ARCHIVE_SECONDS": f"{self.max_archive_seconds:g}",
            "MAX_JSON_BYTES": str(self.max_json_bytes),
            "MAX_QUEUED": str(self.max_queued),
            "RATE_LIMIT": f"{self.rate_limit:g}",
            "RATE_BURST": str(self.rate_burst),
            "MAX_WAITS_PER_KEY": str(self.max_waits_per_key),
            "CLIENT_TIMEOUT": str(self.client_timeout),
            "ALLOW_PRIVATE_URLS": "1" if self.allow_private_urls else "0",
            "WEBHOOK_RETRY_SCHEDULE": ",".join(f"{s:g}" for s in self.webhook_retry_schedule),
            "WEBHOOK_TIMEOUT": str(self.webhook_timeout),
            "WEBHOOK_ENDPOINT_CONCURRENCY": str(self.webhook_endpoint_concurrency),
            "VISIBILITY_TIMEOUT": str(self.visibility_timeout),
            "REDIS_TIMEOUT": f"{self.redis_timeout:g}",
            "UPLOAD_TIMEOUT": str(self.upload_timeout),
            "CHUNK_SIZE": str(self.chunk_size),
            "BATCH_WAIT_MS": str(self.batch_wait_ms),
            "WORKER_MAX_MEMORY_MB": str(self.worker_max_memory_mb),
            "INFERENCE_PRECISION": self.inference_precision,
            "LOG_LEVEL": self.log_level,
            "LOG_FORMAT": self.log_format,
        }
        if self.registry is not None:
            values["REGISTRY"] = str(self.registry)
        if self.flower_basic_auth:
            values["FLOWER_BASIC_AUTH"] = self.flower_basic_auth
        if self.metrics_token:
            values["METRICS_TOKEN"] = self.metrics_token
        return {PREFIX + key: value for key, value in values.items()}


class _Reader:
    """Reads one variable at a time so that an error names the variable and its value."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def get(self, name: str, parse: Callable[[str], T], default: T) -> T:
        raw = self.env.get(PREFIX + name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}{name}={raw!r} is invalid: {exc}") from None


def _number(
    kind: Callable[[str], T],
    *,
    above: float | None = None,
    least: float | None = None,
    expected: str = "a whole number",
) -> Callable[[str], T]:
    """A parser for a number of `kind` that must be above `above` or at least `least`."""

    def parse(raw: str) -> T:
        try:
            value = kind(raw)
        except ValueError:
            raise InvalidArgument(f"expected {expected}") from None
        if above is not None and not value > above:  # type: ignore[operator]
            raise InvalidArgument(f"expected a number above {above:g}")
        if least is not None and not value >= least:  # type: ignore[operator]
            raise InvalidArgument(f"expected {least:g} or more")
        return value

    return parse


_positive_int = _number(int, above=0)
_non_negative_int = _number(int, least=0)
_positive_float = _number(float, above=0, expected="a number")


def _bool(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise InvalidArgument("expected 1 or 0")


def _path(raw: str) -> Path:
    return Path(raw).expanduser()


def _redis_url(raw: str) -> str:
    parsed = urlparse(raw)
    if parsed.scheme not in {"redis", "rediss", "unix"}:
        raise InvalidArgument("expected a redis://, rediss:// or unix:// URL")
    if parsed.scheme != "unix" and not parsed.hostname:
        raise InvalidArgument("the URL has no host")
    try:
        parsed.port  # noqa: B018 - urllib raises ValueError on a bad port only when asked
    except ValueError:
        raise InvalidArgument("the port is not a number between 0 and 65535") from None
    return raw


def _schedule(raw: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise InvalidArgument("expected comma-separated seconds, e.g. 5,300,1800") from None
    if any(value < 0 for value in values):
        raise InvalidArgument("delays cannot be negative")
    return values


def _basic_auth(raw: str) -> str:
    user, sep, password = raw.partition(":")
    if not sep or not user or not password:
        raise InvalidArgument("expected user:password")
    return raw


def _token(raw: str) -> str:
    if len(raw) < MIN_TOKEN_LENGTH or not all("!" <= c <= "~" for c in raw):
        raise InvalidArgument(f"expected at least {MIN_TOKEN_LENGTH} printable ASCII characters")
    return raw


def _precision(raw: str) -> str:
    if raw.lower() not in {"auto", "fp32", "fp16", "bf16", "int8"}:
        raise InvalidArgument("expected auto, fp32, fp16, bf16 or int8")
    return raw.lower()


def _log_format(raw: str) -> str:
    if raw.lower() not in {"text", "json"}:
        raise InvalidArgument("expected text or json")
    return raw.lower()


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise InvalidArgument("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level
