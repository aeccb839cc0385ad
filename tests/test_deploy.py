"""docker-compose.yml is valid for Compose v2 and docker-compose 1.29 and keeps its guarantees.

Only `config` runs, which needs no Docker engine. CI installs Debian's `docker-compose`
(1.29); a `docker compose` plugin (v2) is checked as well wherever one is installed."""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROFILES = ("tools", "cpu", "s3", "monitoring")  # enable every service, so all are validated
FLOWER_AUTH = "ops:test-only-password"
COMPOSE_TIMEOUT = 120
# Variables that change the rendered file; the caller's values must not leak into the test.
FILE_VARIABLES = frozenset(
    {
        "API_PORT",
        "FLOWER_BIND",
        "FLOWER_PORT",
        "REDIS_MAXMEMORY",
        "API_IMAGE",
        "WORKER_IMAGE",
        "WORKER_EXTRA",
        "TRAIN_DATA",
        "SEAWEEDFS_IMAGE",
    }
)
SKUAI_SERVICES = ("web", "inference-worker", "webhook-worker", "flower")
CELERY_WORKERS = ("inference-worker", "inference-worker-cpu", "webhook-worker")


@dataclass(frozen=True)
class ComposeCLI:
    """One installed Compose command line and the version it reports."""

    argv: tuple[str, ...]
    version: str

    @property
    def major(self) -> int:
        """1 for the Python docker-compose, 2 for the Go one."""
        return int(self.version.split(".")[0])

    def run(
        self,
        *args: str,
        env_file: Path,
        extra_env: dict[str, str],
    ) -> subprocess.CompletedProcess[str]:
        """Run Compose on docker-compose.yml with every profile and a clean environment."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("SKUAI_", "COMPOSE_", "AWS_")) and key not in FILE_VARIABLES
        }
        env.update(extra_env)
        profiles = [arg for profile in PROFILES for arg in ("--profile", profile)]
        # --env-file: a developer's .env next to the compose file must not change the result.
        command = [
            *self.argv,
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(env_file),
            *profiles,
            *args,
        ]
        return subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMPOSE_TIMEOUT,
            check=False,
        )


def _version(argv: list[str]) -> str | None:
    """The version `argv version --short` reports (e.g. 1.29.2), or None if it does not run."""
    try:
        done = subprocess.run(
            [*argv, "version", "--short"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return None
    match = re.match(r"v?(\d+\.\d+\.\d+)", done.stdout.strip())
    return match.group(1) if done.returncode == 0 and match else None


def _installed_clis() -> list[ComposeCLI]:
    """`docker-compose` on PATH and the `docker compose` plugin, where they run."""
    candidates = []
    if legacy := shutil.which("docker-compose"):
        candidates.append([legacy])
    if docker := shutil.which("docker"):
        candidates.append([docker, "compose"])
    clis = []
    for argv in candidates:
        version = _version(argv)
        if version is not None:
            clis.append(ComposeCLI(tuple(argv), version))
    return clis


def _cli_id(cli: ComposeCLI | None) -> str:
    """A test id such as `docker-compose 1.29.2` or `docker compose 2.40.3`."""
    if cli is None:
        return "none"
    return " ".join([Path(cli.argv[0]).name, *cli.argv[1:], cli.version])


INSTALLED_CLIS: list[ComposeCLI | None] = [*_installed_clis()] or [None]


@pytest.fixture(scope="module", params=INSTALLED_CLIS, ids=_cli_id)
def compose(request: pytest.FixtureRequest) -> ComposeCLI:
    """Each installed Compose CLI in turn."""
    if request.param is None:
        pytest.skip("no docker-compose binary found (CI installs Debian's docker-compose)")
    cli: ComposeCLI = request.param
    return cli


@pytest.fixture(scope="module")
def empty_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty file for --env-file."""
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def services(compose: ComposeCLI, empty_env_file: Path) -> dict[str, dict[str, Any]]:
    """The services as this Compose CLI resolves them, with the required secret set."""
    return _render(compose, empty_env_file)


def _render(compose: ComposeCLI, env_file: Path) -> dict[str, dict[str, Any]]:
    """The services as this Compose CLI resolves them with `env_file` as `.env` (and the
    required secret set)."""
    env = {"SKUAI_FLOWER_BASIC_AUTH": FLOWER_AUTH}
    if compose.major >= 2:
        done = compose.run("config", "--format", "json", env_file=env_file, extra_env=env)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout)["services"])
    done = compose.run("config", env_file=env_file, extra_env=env)
    assert done.returncode == 0, done.stderr
    return dict(_load_yaml(done.stdout, compose)["services"])


def _load_yaml(text: str, compose: ComposeCLI) -> dict[str, Any]:
    """Parse docker-compose 1.x output with PyYAML, or else with docker-compose's own Python."""
    # PyYAML is a dev dependency; docker-compose 1.x is a Python program built on PyYAML,
    # so where it is missing here the interpreter named in its script line still has it.
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:
        pass
    else:
        return dict(yaml.safe_load(text))
    script = Path(compose.argv[0])
    first_line = script.read_bytes().split(b"\n", 1)[0].decode("utf-8", "replace")
    if not first_line.startswith("#!"):
        pytest.fail("PyYAML is needed to read docker-compose 1.x output: pip install -e '.[dev]'")
    interpreter = shlex.split(first_line[2:])
    to_json = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    done = subprocess.run(
        [*interpreter, "-c", to_json],
        input=text,
        capture_output=True,
        text=True,
        timeout=COMPOSE_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _command(service: dict[str, Any]) -> list[str]:
    """A service's command as a list (1.x keeps a string command as written)."""
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


def _mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of each volume, from 1.x strings or v2 mappings."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            mounts.append((source, target, "ro" in mode[0].split(",") if mode else False))
        else:
            source, target = volume.get("source", ""), volume["target"]
            mounts.append((source, target, bool(volume.get("read_only"))))
    return mounts


def _seconds(duration: str | int | float) -> float:
    """Seconds in a Compose duration: "120s", "1m30s", "2m0s" or a bare number."""
    if isinstance(duration, (int, float)):
        return float(duration)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def test_config_is_valid(compose: ComposeCLI, empty_env_file: Path) -> None:
    """`config -q` accepts the file, without warnings (1.x warns when it ignores a key)."""
    done = compose.run(
        "config",
        "-q",
        env_file=empty_env_file,
        extra_env={"SKUAI_FLOWER_BASIC_AUTH": FLOWER_AUTH},
    )
    assert done.returncode == 0, done.stderr
    assert "warn" not in done.stderr.lower(), done.stderr


def test_flower_password_has_no_default(compose: ComposeCLI, empty_env_file: Path) -> None:
    """Without SKUAI_FLOWER_BASIC_AUTH Compose refuses the file, naming the variable."""
    done = compose.run("config", "-q", env_file=empty_env_file, extra_env={})
    assert done.returncode != 0
    assert "SKUAI_FLOWER_BASIC_AUTH" in done.stdout + done.stderr


def test_flower_password_comes_from_the_environment(services: dict[str, dict[str, Any]]) -> None:
    """Flower gets exactly the credentials the environment holds."""
    assert services["flower"]["environment"]["SKUAI_FLOWER_BASIC_AUTH"] == FLOWER_AUTH


def test_redis_persists_and_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    """AOF fsynced every second, noeviction, a ping healthcheck and a named data volume."""
    redis = services["redis"]
    command = " ".join(_command(redis))
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])
    assert ("redis-data", "/data", False) in _mounts(redis)


def test_inference_worker_reserves_a_gpu_and_scales(services: dict[str, dict[str, Any]]) -> None:
    """One NVIDIA GPU per replica, and nothing that stops `--scale` (fixed name or host port)."""
    worker = services["inference-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        device["driver"] == "nvidia"
        and int(device["count"]) == 1
        and "gpu" in device["capabilities"]
        for device in devices
    ), devices
    assert "container_name" not in worker
    assert not worker.get("ports")
    assert _seconds(worker["stop_grace_period"]) >= 60  # time to finish the running chunk


def test_services_wait_for_a_healthy_redis(services: dict[str, dict[str, Any]]) -> None:
    """The API and the workers start only once Redis answers (its AOF is loaded)."""
    for name in SKUAI_SERVICES:
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_only_the_trainer_writes_the_registry(services: dict[str, dict[str, Any]]) -> None:
    """Every other service mounts the model registry read-only."""
    for name, service in services.items():
        for source, target, read_only in _mounts(service):
            if target == "/registry":
                assert read_only != name.startswith("trainer"), (name, source)


def test_long_running_services_restart_and_report_health(
    services: dict[str, dict[str, Any]],
) -> None:
    """Everything but the one-off trainers restarts by itself and has a healthcheck."""
    for name, service in services.items():
        if name.startswith("trainer"):
            continue
        assert service.get("restart") == "unless-stopped", name
        test = service.get("healthcheck", {}).get("test")
        assert test and test != ["NONE"], name


def test_worker_healthchecks_ping_their_own_node(services: dict[str, dict[str, Any]]) -> None:
    """A worker's ping goes to <--name>@<hostname>, the node name `skuai worker` gives it."""
    for name in CELERY_WORKERS:
        command = _command(services[name])
        node_prefix = command[command.index("--name") + 1]
        check = " ".join(services[name]["healthcheck"]["test"])
        assert f"--destination {node_prefix}@$" in check and "HOSTNAME" in check, name


# --- the blob store -----------------------------------------------------------------------------

BLOB_SERVICES = ("web", "inference-worker", "inference-worker-cpu", "webhook-worker", "flower")
S3_ENV = {  # what deploy/README.md puts in .env to use the bundled S3 store
    "SKUAI_BLOB_URL": "s3://skuai-images/blobs",
    "AWS_ENDPOINT_URL": "http://s3:8333",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "skuai",
    "AWS_SECRET_ACCESS_KEY": "0123456789abcdef0123456789abcdef",
}


def test_the_default_blob_store_is_the_shared_home_volume(
    services: dict[str, dict[str, Any]],
) -> None:
    """Without SKUAI_BLOB_URL the API and the inference workers share SKUAI_HOME (where the
    file store keeps its images) on one volume, and the S3 store runs only with its profile."""
    for name in ("web", "inference-worker", "inference-worker-cpu"):
        env = services[name]["environment"]
        assert env["SKUAI_HOME"] == "/var/lib/skuai", name
        assert not env.get("SKUAI_BLOB_URL"), name  # unset: the declared default, a folder
        assert not env.get("AWS_ENDPOINT_URL"), name
        assert ("home", "/var/lib/skuai", False) in _mounts(services[name]), name
    assert services["s3"]["profiles"] == ["s3"]


def test_the_s3_store_keeps_its_data_and_stays_private(services: dict[str, dict[str, Any]]) -> None:
    """A named volume for its data, no host port, and a healthcheck on its S3 port."""
    s3 = services["s3"]
    assert ("s3-data", "/data", False) in _mounts(s3)
    assert not s3.get("ports")
    assert "http://127.0.0.1:8333/healthz" in s3["healthcheck"]["test"]
    assert s3["image"].startswith("chrislusf/seaweedfs:")


def test_s3_settings_reach_every_service_that_opens_the_store(
    compose: ComposeCLI, tmp_path: Path
) -> None:
    """With .env set as deploy/README.md says, the skuai services get the store's URL and
    boto3's variables, the store gets the URL and its keys, and the endpoint is its port."""
    env_file = tmp_path / "s3.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in S3_ENV.items()))
    services = _render(compose, env_file)
    for name in BLOB_SERVICES:
        env = services[name]["environment"]
        assert {key: env.get(key) for key in S3_ENV} == S3_ENV, name
    store_env = services["s3"]["environment"]
    for key in ("SKUAI_BLOB_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert store_env[key] == S3_ENV[key], key
    assert "-s3.port=8333" in _s3_script(services)  # AWS_ENDPOINT_URL's port


def _s3_script(services: dict[str, dict[str, Any]]) -> str:
    """The shell script the s3 service runs, as its shell sees it (`$$` is Compose's `$`)."""
    s3 = services["s3"]
    entrypoint = s3["entrypoint"]
    assert (shlex.split(entrypoint) if isinstance(entrypoint, str) else entrypoint) == [
        "/bin/sh",
        "-c",
    ]
    command = s3["command"]
    script = command if isinstance(command, str) else command[0]
    return str(script).replace("$$", "$")


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "SKUAI_BLOB_URL=s3://"),
        ({**S3_ENV, "SKUAI_BLOB_URL": "file:///var/lib/skuai/blobs"}, "SKUAI_BLOB_URL=s3://"),
        ({**S3_ENV, "AWS_SECRET_ACCESS_KEY": ""}, "AWS_SECRET_ACCESS_KEY"),
        ({**S3_ENV, "AWS_ACCESS_KEY_ID": ""}, "AWS_ACCESS_KEY_ID"),
        (S3_ENV, None),
    ],
)
def test_the_s3_store_starts_only_with_a_bucket_and_keys(
    services: dict[str, dict[str, Any]], tmp_path: Path, env: dict[str, str], says: str | None
) -> None:
    """The service's script, run with a stand-in `weed`: without an s3:// URL or without keys
    it refuses, naming what to set; else it starts `weed mini` on the URL's bucket."""
    (tmp_path / "weed").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$WEED_ARGS"\n')
    (tmp_path / "weed").chmod(0o755)
    args = tmp_path / "args"
    done = subprocess.run(
        ["/bin/sh", "-c", _s3_script(services)],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", "WEED_ARGS": str(args), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if says is not None:
        assert done.returncode != 0
        assert says in done.stderr
        assert not args.exists()
        return
    assert done.returncode == 0, done.stderr
    argv = args.read_text().split("\n")
    assert argv[0] == "mini"
    assert {"-bucket=skuai-images", "-dir=/data", "-ip.bind=0.0.0.0", "-s3.port=8333"} <= set(argv)


def test_redis_maxmemory_is_the_one_the_sizing_guide_assumes(
    services: dict[str, dict[str, Any]],
) -> None:
    """deploy/README.md sizes Redis by job records for the compose default `maxmemory`."""
    command = _command(services["redis"])
    maxmemory = command[command.index("--maxmemory") + 1]
    guide = (ROOT / "deploy" / "README.md").read_text()
    assert f"| `REDIS_MAXMEMORY` | `{maxmemory}` |" in guide
    sizing = guide.split("## Sizing Redis", 1)[1].split("\n## ", 1)[0]
    assert f"default `REDIS_MAXMEMORY` of {maxmemory.removesuffix('gb')} GB" in sizing
    assert "never in Redis" in sizing  # by records: image bytes wait in the blob store
