"""The one settings object: every `SKUAI_*` variable declared once, as a field of `Settings`.

Each field says its name (the variable is `SKUAI_` + the name in capitals), type, default,
bounds, a one-line description and whether containers get it. Validation, `Settings.env()`,
README's configuration table and compose's pass-through list (skuai/config_files.py) all come
from that declaration, so adding a setting is adding a field."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, cast

from pydantic import AfterValidator, Field, JsonValue, ValidationError
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo

from shared import defaults
from shared.blobs.url import check_blob_url
from shared.errors import ConfigError
from shared.redis_url import redacted
from shared.setting_types import (
    BasicAuth,
    Flag,
    HomePath,
    LogFormat,
    LogLevel,
    OptionalPath,
    Precision,
    RedisUrl,
    Schedule,
    Token,
)

PREFIX = "SKUAI_"
BlobUrl = Annotated[str | None, AfterValidator(check_blob_url)]


def setting(
    default: Any,
    description: str,
    *,
    gt: float | None = None,
    ge: float | None = None,
    containers: bool = True,
    compose: str = "",
    shown: str | None = None,
) -> Any:
    """Declare one setting: its default, one-line description and bounds; `containers`: whether
    compose passes it to every skuai container (as `compose` when given, else from the shell or
    .env); `shown`: the default as the docs write it, where the value itself would mislead."""
    extra: dict[str, JsonValue] = {"containers": containers, "compose": compose, "shown": shown}
    return Field(
        default,
        description=description,
        validate_default=True,
        json_schema_extra=extra,
        gt=gt,
        ge=ge,
    )


@dataclass(frozen=True)
class Settings:
    """Every tunable of the service; build it once per process with `Settings.from_env()`."""

    redis_url: RedisUrl = setting(
        defaults.REDIS_URL,
        "Redis for queues, jobs and results (sentinel://: through Sentinel, docs/reliability.md).",
        compose="${SKUAI_REDIS_URL:-redis://redis:6379/0}",
    )
    home: HomePath = setting(
        Path(defaults.HOME), "Folder for local state (models, demo data).", compose="/var/lib/skuai"
    )
    registry: OptionalPath = setting(
        None, "The model registry.", compose="/registry", shown="$SKUAI_HOME/registry"
    )
    log_level: LogLevel = setting(defaults.LOG_LEVEL, "Log level of every process.")
    result_ttl: int = setting(defaults.RESULT_TTL, "Seconds a finished job stays readable.", gt=0)
    result_archive_ttl: int = setting(
        defaults.RESULT_ARCHIVE_TTL,
        "Seconds a finished batch's results stay readable from the blob store after Redis.",
        gt=0,
    )
    image_ttl: int = setting(
        defaults.IMAGE_TTL, "Seconds an uploaded image waits for a worker at most.", gt=0
    )
    max_image_bytes: int = setting(defaults.MAX_IMAGE_BYTES, "Bytes of one image.", gt=0)
    max_image_pixels: int = setting(defaults.MAX_IMAGE_PIXELS, "Pixels of one image.", gt=0)
    max_batch_images: int = setting(defaults.MAX_BATCH_IMAGES, "Images in one batch.", gt=0)
    max_queued: int = setting(
        defaults.MAX_QUEUED, "Jobs one tenant may have waiting (then 429).", gt=0
    )
    allow_private_urls: Flag = setting(
        False, "Allow image and webhook URLs on private, loopback or link-local addresses."
    )
    metrics_token: Token = setting(
        None,
        "Bearer token Prometheus sends for /metrics; unset, /metrics answers loopback only.",
    )
    sku_share_window: int = setting(
        defaults.SKU_SHARE_WINDOW,
        "Latest predictions per tenant that /metrics' SKU shares (skuai_sku_share) cover.",
        gt=0,
    )
    sku_share_top: int = setting(
        defaults.SKU_SHARE_TOP, "Most predicted SKUs per tenant that /metrics gives a share.", gt=0
    )
    webhook_retry_schedule: Schedule = setting(
        defaults.WEBHOOK_RETRY_SCHEDULE, "Seconds between webhook delivery attempts."
    )
    visibility_timeout: int = setting(
        defaults.VISIBILITY_TIMEOUT,
        "Seconds after which work held by a vanished worker goes to another.",
        gt=0,
    )
    redis_timeout: float = setting(
        defaults.REDIS_TIMEOUT,
        "Seconds one Redis command may take; past it the API answers 503 (never retried).",
        gt=0,
    )
    upload_timeout: int = setting(
        defaults.UPLOAD_TIMEOUT,
        "Seconds an upload may store no image before the sweeper rolls it back (its key freed).",
        gt=0,
    )
    chunk_size: int = setting(defaults.CHUNK_SIZE, "Images in one inference task.", gt=0)
    batch_wait_ms: int = setting(
        defaults.BATCH_WAIT_MS,
        "Milliseconds a worker waits for more single-image jobs to batch together.",
        ge=0,
    )
    worker_max_memory_mb: int = setting(
        defaults.WORKER_MAX_MEMORY_MB,
        "MiB a worker pool process may grow to before it is replaced after its task.",
        gt=0,
    )
    inference_precision: Precision = setting(
        defaults.INFERENCE_PRECISION, "Inference precision; auto: fp16 on a GPU, fp32 on the CPU."
    )
    decode_threads: int = setting(
        defaults.DECODE_THREADS,
        "Threads that decode images in each inference worker process; 0: one per core it may use.",
        ge=0,
    )
    retrain_corrections: int = setting(
        0,
        "New corrections (all tenants) since the last retrain that start another; 0: never.",
        ge=0,
    )
    retrain_data: OptionalPath = setting(
        None, "The training dataset a triggered retrain adds the exported corrections to."
    )
    review_correction_window: int = setting(
        7 * 24 * 3600,
        "Seconds a tenant keeping corrected jobs holds each finished image for a correction "
        "(at most its review retention, within its cap).",
        ge=0,
        shown="604800 (7 days)",
    )
    rate_limit: float = setting(
        defaults.RATE_LIMIT, "Requests per second per API key, sustained.", gt=0
    )
    rate_burst: int = setting(defaults.RATE_BURST, "Requests per API key in a burst.", gt=0)
    webhook_timeout: int = setting(
        defaults.WEBHOOK_TIMEOUT, "Seconds for one webhook delivery attempt.", gt=0
    )
    webhook_endpoint_concurrency: int = setting(
        defaults.WEBHOOK_ENDPOINT_CONCURRENCY,
        "Delivery attempts in flight to one endpoint (1 while it fails).",
        gt=0,
    )
    max_request_bytes: int = setting(
        defaults.MAX_REQUEST_BYTES, "Bytes of one batch upload, all parts together.", gt=0
    )
    max_archive_bytes: int = setting(
        defaults.MAX_ARCHIVE_BYTES, "Bytes one uploaded archive may expand to.", gt=0
    )
    max_json_bytes: int = setting(
        defaults.MAX_JSON_BYTES, "Bytes of any request body but an upload (then 413).", gt=0
    )
    max_waits_per_key: int = setting(
        defaults.MAX_WAITS_PER_KEY, "Long polls one API key may hold open at once (then 429).", gt=0
    )
    client_timeout: int = setting(
        defaults.CLIENT_TIMEOUT,
        "Seconds for a request's headers, between two body reads, and idle keep-alive.",
        gt=0,
    )
    max_archive_seconds: float = setting(
        defaults.MAX_ARCHIVE_SECONDS, "Seconds to unpack one uploaded archive.", gt=0
    )
    blob_url: BlobUrl = setting(
        None,
        "Where uploaded image bytes wait for a worker (s3://: endpoint and keys from AWS_*).",
        shown="file://$SKUAI_HOME/blobs",
    )
    blob_timeout: float = setting(
        defaults.BLOB_TIMEOUT,
        "Seconds one blob store request may take to connect and to answer (tried twice).",
        gt=0,
    )
    log_format: LogFormat = setting(
        defaults.LOG_FORMAT, "Log line format.", compose="${SKUAI_LOG_FORMAT:-json}"
    )
    flower_basic_auth: BasicAuth = setting(
        None,
        "Flower's login; compose requires it for the flower service only.",
        containers=False,
    )

    def __post_init__(self) -> None:
        """Checks across settings, once each has a valid value: one line each."""
        if self.upload_timeout < 2 * self.max_archive_seconds:
            # Unpacking stores nothing until an entry is read: the sweeper must not roll back an
            # upload that is still within SKUAI_MAX_ARCHIVE_SECONDS.
            raise ConfigError(
                f"SKUAI_UPLOAD_TIMEOUT={as_text(self.upload_timeout)!r} is invalid: expected at "
                f"least twice SKUAI_MAX_ARCHIVE_SECONDS ({as_text(self.max_archive_seconds)})"
            )

    @property
    def blob_store_url(self) -> str:
        """The blob store: `SKUAI_BLOB_URL`, or the folder `blobs/` under `SKUAI_HOME`."""
        return self.blob_url or (self.home / "blobs").absolute().as_uri()

    @property
    def registry_dir(self) -> Path:
        """The model registry: `SKUAI_REGISTRY`, or `registry/` under `SKUAI_HOME`."""
        return self.registry if self.registry is not None else self.home / "registry"

    @classmethod
    def declared(cls) -> dict[str, FieldInfo]:
        """Every setting's declaration, by field name, in declaration order."""
        # Set by pydantic's dataclass decorator, which mypy does not know about.
        fields: dict[str, FieldInfo] = getattr(cls, "__pydantic_fields__")  # noqa: B009
        return dict(fields)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every `SKUAI_*` variable; raise ConfigError with one line for each
        bad one (an unset or blank variable takes its default)."""
        env = os.environ if environ is None else environ
        raw = {name: env.get(variable(name), "") for name in cls.declared()}
        given = {name: value for name, value in raw.items() if value.strip()}
        try:
            return cls(**cast(dict[str, Any], {n: v.strip() for n, v in given.items()}))
        except ValidationError as exc:
            problems: dict[str, str] = {}
            for error in exc.errors():
                name = str(error["loc"][0])
                shown = redacted(raw[name]) if "://" in raw[name] else raw[name]
                problems.setdefault(
                    name, f"{variable(name)}={shown!r} is invalid: {_explain(error)}"
                )
            raise ConfigError("\n".join(problems.values())) from None

    def env(self) -> dict[str, str]:
        """These settings as `SKUAI_*` variables, for the processes a command starts."""
        values = {name: getattr(self, name) for name in self.declared()}
        return {
            variable(name): as_text(value)
            for name, value in values.items()
            if value is not None and value != ""
        }


def variable(name: str) -> str:
    """The environment variable of the setting `name`."""
    return PREFIX + name.upper()


def as_text(value: object) -> str:
    """A setting's value as its variable writes it (`from_env` reads it back unchanged)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        # repr is exact (float(repr(x)) == x); whole numbers are written as integers.
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, tuple):
        return ",".join(as_text(float(part)) for part in value)
    return str(value)


def _explain(error: Any) -> str:
    """Pydantic's complaint about one value, in the words our messages use."""
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "greater_than":
        return f"expected a number above {ctx['gt']:g}"
    if kind == "greater_than_equal":
        return f"expected {ctx['ge']:g} or more"
    return _EXPECTED.get(kind, str(error["msg"]))


_EXPECTED = {
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "bool_parsing": "expected 1 or 0",
}
