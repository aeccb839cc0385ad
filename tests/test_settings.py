"""Settings: defaults, parsing, and one clear line for each bad value."""

from __future__ import annotations

import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from pydantic.dataclasses import dataclass

from shared import defaults
from shared.errors import ConfigError
from shared.settings import Settings, setting
from skuai import config_files
from worker import runtime
from worker.celery_app import WorkerApp


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url == defaults.REDIS_URL
    assert settings.home == Path("~/.skuai").expanduser()
    assert settings.registry_dir == settings.home / "registry"
    assert settings.allow_private_urls is False
    assert settings.webhook_retry_schedule == defaults.WEBHOOK_RETRY_SCHEDULE


def test_values_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "SKUAI_REDIS_URL": "redis://cache:6380/2",
            "SKUAI_HOME": "/srv/skuai",
            "SKUAI_REGISTRY": "/models",
            "SKUAI_RESULT_TTL": "60",
            "SKUAI_MAX_IMAGE_BYTES": "1000",
            "SKUAI_ALLOW_PRIVATE_URLS": "1",
            "SKUAI_WEBHOOK_RETRY_SCHEDULE": "5,300,1800,7200",
            "SKUAI_VISIBILITY_TIMEOUT": "120",
            "SKUAI_FLOWER_BASIC_AUTH": "ops:secret",
            "SKUAI_LOG_LEVEL": "debug",
        }
    )
    assert settings.redis_url == "redis://cache:6380/2"
    assert settings.registry_dir == Path("/models")
    assert settings.result_ttl == 60 and settings.max_image_bytes == 1000
    assert settings.allow_private_urls is True
    assert settings.webhook_retry_schedule == (5.0, 300.0, 1800.0, 7200.0)
    assert settings.visibility_timeout == 120 and settings.log_level == "DEBUG"


def test_round_trip_through_the_environment() -> None:
    settings = Settings.from_env(
        {
            "SKUAI_MAX_QUEUED": "7",
            "SKUAI_ALLOW_PRIVATE_URLS": "yes",
            "SKUAI_METRICS_TOKEN": "scrape-token-0123456789",
        }
    )
    assert Settings.from_env(settings.env()) == settings


def test_numbers_keep_their_precision_through_the_environment() -> None:
    settings = Settings.from_env({"SKUAI_WEBHOOK_RETRY_SCHEDULE": "5,1234567,0.1,2.5e-7"})
    assert settings.env()["SKUAI_WEBHOOK_RETRY_SCHEDULE"] == "5,1234567,0.1,2.5e-07"
    assert Settings.from_env(settings.env()) == settings


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("SKUAI_REDIS_URL", "http://localhost", "redis://"),
        ("SKUAI_REDIS_URL", "redis://host:99999/0", "port"),
        ("SKUAI_RESULT_TTL", "abc", "whole number"),
        ("SKUAI_MAX_IMAGE_BYTES", "0", "above 0"),
        ("SKUAI_ALLOW_PRIVATE_URLS", "maybe", "1 or 0"),
        ("SKUAI_WEBHOOK_RETRY_SCHEDULE", "5,soon", "comma-separated"),
        ("SKUAI_WEBHOOK_RETRY_SCHEDULE", "5,-1", "negative"),
        ("SKUAI_WEBHOOK_RETRY_SCHEDULE", "5,nan", "finite"),
        ("SKUAI_WEBHOOK_RETRY_SCHEDULE", "inf", "finite"),
        ("SKUAI_FLOWER_BASIC_AUTH", "nopassword", "user:password"),
        ("SKUAI_METRICS_TOKEN", "short", "at least 16"),
        ("SKUAI_METRICS_TOKEN", "sixteen chars with spaces", "printable ASCII"),
        ("SKUAI_LOG_LEVEL", "loud", "DEBUG"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    assert info.value.message.startswith(f"{name}={value!r} is invalid")
    assert fragment in info.value.message


def test_command_line_reports_bad_settings_in_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "skuai", "models", "list"],
        env={"PATH": "/usr/bin:/bin", "SKUAI_RESULT_TTL": "-5", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert (
        out.stderr.strip() == "error: SKUAI_RESULT_TTL='-5' is invalid: expected a number above 0"
    )
    assert "Traceback" not in out.stdout + out.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [("SKUAI_FAILPOINT_SLOW_START", "soon"), ("SKUAI_FAILPOINT_CRASH_ON_REF", "a.png:x")],
)
def test_a_bad_failpoint_stops_celery_with_one_line(name: str, value: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker.celery_app", "report"],
        env={"PATH": "/usr/bin:/bin", name: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.strip().startswith(f"error: {name}={value!r} is invalid: expected")
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_celerys_app_is_built_once() -> None:
    code = "import worker.celery_app as m; print(m.app is m.app)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "True"


def test_several_bad_values_get_one_line_each() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SKUAI_CHUNK_SIZE": "many", "SKUAI_BATCH_WAIT_MS": "-1"})
    assert info.value.message.splitlines() == [
        "SKUAI_CHUNK_SIZE='many' is invalid: expected a whole number",
        "SKUAI_BATCH_WAIT_MS='-1' is invalid: expected 0 or more",
    ]


def test_upload_timeout_must_outlast_unpacking_an_archive() -> None:
    # an upload unpacking an archive stores nothing meanwhile: the sweeper must not roll it back
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SKUAI_UPLOAD_TIMEOUT": "60", "SKUAI_MAX_ARCHIVE_SECONDS": "60"})
    assert info.value.message == (
        "SKUAI_UPLOAD_TIMEOUT='60' is invalid: expected at least twice "
        "SKUAI_MAX_ARCHIVE_SECONDS (60)"
    )
    assert Settings.from_env({"SKUAI_UPLOAD_TIMEOUT": "60", "SKUAI_MAX_ARCHIVE_SECONDS": "30"})


def test_generated_files_follow_the_declaration() -> None:
    """README's configuration table and compose's `x-skuai-env` list are up to date."""
    out_of_date = [str(path.relative_to(config_files.ROOT)) for path in config_files.stale()]
    assert not out_of_date, (
        f"{out_of_date} differ from shared/settings.py: run `skuai config write`"
    )


@dataclass(frozen=True)
class _WithAKnob(Settings):
    """The settings with one more field, declared the one way every setting is."""

    extra_knob: int = setting(7, "A knob only this test has.", gt=0)
    extra_secret: str | None = setting(None, "A secret no container gets.", containers=False)


def test_adding_a_setting_is_one_declaration(tmp_path: Path) -> None:
    """One field gives validation, `env()`, README's row and compose's pass-through line."""
    knob = _WithAKnob.from_env({"SKUAI_EXTRA_KNOB": "9", "SKUAI_EXTRA_SECRET": "s"})
    assert isinstance(knob, _WithAKnob) and knob.extra_knob == 9
    assert knob.env()["SKUAI_EXTRA_KNOB"] == "9" and knob.env()["SKUAI_EXTRA_SECRET"] == "s"
    assert _WithAKnob.from_env(knob.env()) == knob
    with pytest.raises(
        ConfigError, match=r"^SKUAI_EXTRA_KNOB='0' is invalid: expected a number above 0$"
    ):
        _WithAKnob.from_env({"SKUAI_EXTRA_KNOB": "0"})

    for name in ("README.md", "docker-compose.yml"):
        (tmp_path / name).write_text((config_files.ROOT / name).read_text())
    assert config_files.stale(tmp_path, _WithAKnob) == [
        tmp_path / "README.md",
        tmp_path / "docker-compose.yml",
    ]
    config_files.write(tmp_path, _WithAKnob)
    assert config_files.stale(tmp_path, _WithAKnob) == []
    readme = (tmp_path / "README.md").read_text()
    assert (
        "| `SKUAI_EXTRA_KNOB` | `7` | whole number above 0 | A knob only this test has. |" in readme
    )
    assert "`SKUAI_EXTRA_SECRET` | unset |" in readme
    compose = yaml.safe_load((tmp_path / "docker-compose.yml").read_text())
    assert "SKUAI_EXTRA_KNOB" in compose["x-skuai-env"]
    assert "SKUAI_EXTRA_SECRET" not in compose["x-skuai-env"]
    assert set(compose["services"]["web"]["environment"]) >= set(compose["x-skuai-env"])


def test_a_worker_process_takes_its_settings_from_the_app(settings: Settings) -> None:
    """Pool processes build their runtime from the settings their app carries, not the
    environment; a pickled app comes back with the same settings."""
    app = WorkerApp(replace(settings, chunk_size=7))
    built = runtime.current(app)
    try:
        assert built.settings is app.settings and built.settings.chunk_size == 7
        assert app.runtime is built and runtime.current(app) is built
        assert pickle.loads(pickle.dumps(app)).settings == app.settings
    finally:
        runtime.stop(app)
