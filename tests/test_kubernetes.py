"""deploy/kubernetes/ is valid Kubernetes and agrees with the code it deploys.

All offline, no cluster: the built-in kinds validate against the Kubernetes schemas that
kubernetes-validate ships (strict: an unknown or misspelt field fails); KEDA's kinds, which those
schemas lack, against a schema written from KEDA's ScaledObject and TriggerAuthentication
reference. Then what a schema cannot see: every `SKUAI_*` variable is a declared setting and its
value passes the validation the processes run at start-up; probes name real routes; the Redis list
and the metrics the autoscaler reads are where Celery puts messages and what the API exports (read
from a real Redis); images, commands and users match the Dockerfiles and compose."""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import redis
import yaml
from flower.urls import handlers

from shared import defaults
from shared.metrics import ClusterCollector
from shared.queues import (
    ALL_QUEUES,
    INFERENCE,
    MODEL_QUEUES,
    POOL_PROCESS_START_TIMEOUT,
    enqueue_classify,
    make_celery,
)
from shared.redis_client import connect
from shared.settings import Settings, variable
from skuai.redis_server import find_binary
from web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "deploy" / "kubernetes"
NAMESPACE = "skuai"
# The oldest Kubernetes the manifests claim (deploy/README.md) and the newest the package knows.
K8S_VERSIONS = ("1.29", kubernetes_validate.latest_version())
# Settings the manifests prepare for but that skuai does not declare yet; no container may read
# them until it does (then wire them in and drop them from here).
# Workloads and the compose service each one runs as.
COMPOSE_SERVICE = {
    "api": "web",
    "inference-gpu": "inference-worker",
    "inference-cpu": "inference-worker-cpu",
    "webhook-worker": "webhook-worker",
    "flower": "flower",
    "train": "trainer",
    "activate": "trainer",
}
# One replica, nothing depends on it: a budget for one pod would only block node drains.
WITHOUT_BUDGET = frozenset({"flower"})
SKUAI_UID = 10001

# KEDA's CRDs are not in the Kubernetes schemas: the part of them the manifests use, written
# from KEDA's reference pages, trigger parameters included.
KEDA_SCHEMA = json.loads((MANIFESTS / "schemas" / "keda-v1alpha1.schema.json").read_text())


# --- reading the manifests ---------------------------------------------------------------------


def _load() -> list[tuple[Path, dict[str, Any]]]:
    documents = []
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                documents.append((path, document))
    return documents


DOCUMENTS = _load()


def _of_kind(*kinds: str) -> list[dict[str, Any]]:
    return [doc for _, doc in DOCUMENTS if doc["kind"] in kinds]


def _named(kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in _of_kind(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r}, found {len(found)}"
    return found[0]


def _workloads() -> list[dict[str, Any]]:
    return _of_kind("Deployment", "StatefulSet", "Job")


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def _containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for workload in _workloads():
        for container in _pod_spec(workload)["containers"]:
            yield workload, container


def _skuai_containers() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(w, c) for w, c in _containers() if _image_name(c["image"]).startswith("skuai-")]


def _image_name(image: str) -> str:
    """`registry.example/team/skuai-api:0.1.0` -> `skuai-api`."""
    return image.rsplit("/", 1)[-1].split(":", 1)[0]


def _config_map_data(name: str) -> dict[str, str]:
    data: dict[str, str] = _named("ConfigMap", name)["data"]
    return data


def _example_secrets() -> dict[str, dict[str, str]]:
    return {doc["metadata"]["name"]: doc["stringData"] for doc in _of_kind("Secret")}


def _environment(container: dict[str, Any]) -> dict[str, str]:
    """What the container's process would see: its ConfigMaps, then its env, with the example
    Secrets' values and `$(VAR)` references expanded as the kubelet does."""
    env: dict[str, str] = {}
    secrets = _example_secrets()
    for source in container.get("envFrom", []):
        env.update(_config_map_data(source["configMapRef"]["name"]))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env[m.group(1)], item["value"]
            )
        elif "secretKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _bytes(quantity: str) -> int:
    """A Kubernetes quantity (`26Gi`, `512Mi`) or a Redis size (`12gb`, which is GiB) in bytes."""
    match = re.fullmatch(r"(\d+)([A-Za-z]*)", quantity)
    assert match, quantity
    units = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "mb": 2**20, "gb": 2**30}
    return int(match.group(1)) * units[match.group(2)]


def _seconds(text: str) -> int:
    """A compose duration such as `120s` or `1m30s`."""
    parts = re.findall(r"(\d+)([hms])", text)
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[unit] for n, unit in parts)


def _compose() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return services


def _dockerfile_cmd(name: str) -> list[str]:
    text = (ROOT / "deploy" / name).read_text()
    cmd: list[str] = json.loads(re.findall(r"^CMD (\[.*\])$", text, re.MULTILINE)[-1])
    return cmd


def _scaled_object() -> dict[str, Any]:
    return _named("ScaledObject", "inference-gpu")


def _trigger(kind: str) -> dict[str, Any]:
    (trigger,) = [t for t in _scaled_object()["spec"]["triggers"] if t["type"] == kind]
    return trigger


def _redis_url() -> str:
    (url,) = {_environment(c)["SKUAI_REDIS_URL"] for _, c in _skuai_containers() if _uses_redis(c)}
    return url


def _uses_redis(container: dict[str, Any]) -> bool:
    return any(item["name"] == "SKUAI_REDIS_URL" for item in container.get("env", []))


def _sentinel_parts(url: str) -> tuple[list[str], str, int]:
    """Sentinel addresses, master name and database of a `sentinel://` URL."""
    match = re.fullmatch(r"sentinel://(?:[^@/]*@)?([^/?]+)/(\d+)\?master=([\w-]+)", url)
    assert match, f"not a sentinel://host:port,.../db?master=NAME URL: {url}"
    return match.group(1).split(","), match.group(3), int(match.group(2))


# --- schemas -----------------------------------------------------------------------------------


def test_every_manifest_parses_into_named_objects_of_one_namespace() -> None:
    kinds = {doc["kind"] for _, doc in DOCUMENTS}
    assert {"Deployment", "StatefulSet", "Service", "PodDisruptionBudget", "ScaledObject"} <= kinds
    for path, doc in DOCUMENTS:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, (path, doc["metadata"])
    names = [(doc["kind"], doc["metadata"]["name"]) for _, doc in DOCUMENTS]
    assert len(names) == len(set(names)), "two objects of one kind share a name"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_kinds_validate_against_the_kubernetes_schemas(version: str) -> None:
    errors, validated = [], 0
    for path, doc in DOCUMENTS:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{path.name} {doc['kind']}/{doc['metadata']['name']} {where}: {exc}")
        validated += 1
    assert not errors, "\n".join(errors)
    assert validated >= 20


def test_keda_kinds_validate_against_their_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(KEDA_SCHEMA)
    keda = [doc for _, doc in DOCUMENTS if doc["apiVersion"].startswith("keda.sh/")]
    assert {doc["kind"] for doc in keda} == {"ScaledObject", "TriggerAuthentication"}
    for doc in keda:
        jsonschema.Draft202012Validator(KEDA_SCHEMA).validate(doc)


def test_the_validators_refuse_broken_manifests() -> None:
    """The checks above can fail: a misspelt field, a wrong type, a missing part each do."""
    api = copy.deepcopy(_named("Deployment", "api"))
    api["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(api, K8S_VERSIONS[0], strict=True)
    breakages = (
        lambda so: so["spec"]["triggers"][0]["metadata"].update(listLength=4),
        lambda so: so["spec"]["triggers"][0]["metadata"].update(listLength="four"),
        lambda so: so["spec"]["triggers"][1]["metadata"].pop("threshold"),
        lambda so: so["spec"]["triggers"][0].update(metricType="Average"),
        lambda so: so["spec"].pop("scaleTargetRef"),
        lambda so: so["spec"].update(maxReplicas=10),
    )
    for breaking in breakages:
        scaled = copy.deepcopy(_scaled_object())
        breaking(scaled)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(scaled, KEDA_SCHEMA)


def test_the_redis_scripts_are_valid_shell() -> None:
    for name, script in _config_map_data("redis-scripts").items():
        done = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True)
        assert done.returncode == 0, f"{name}: {done.stderr}"


# --- settings ----------------------------------------------------------------------------------


def test_every_skuai_variable_is_a_declared_setting() -> None:
    declared = {variable(name) for name in Settings.declared()}
    used = {key for doc in _of_kind("ConfigMap") for key in doc.get("data", {})}
    used |= {item["name"] for _, c in _containers() for item in c.get("env", [])}
    used = {name for name in used if name.startswith("SKUAI_")}
    assert used <= declared, sorted(used - declared)


def test_every_skuai_container_starts_with_valid_settings() -> None:
    """The values pass the same validation each process runs at start-up (Settings.from_env)."""
    containers = _skuai_containers()
    assert len(containers) >= 6
    for workload, container in containers:
        env = _environment(container)
        settings = Settings.from_env(env)
        assert str(settings.registry_dir) == "/registry", workload["metadata"]["name"]
        assert settings.log_format == "json"


def test_sentinel_redis_url_is_accepted() -> None:
    settings = Settings.from_env({"SKUAI_REDIS_URL": _redis_url()})
    assert settings.redis_url == _redis_url()


def test_redis_url_sentinels_and_autoscaler_agree() -> None:
    url = _redis_url()
    addresses, master, db = _sentinel_parts(url)
    sentinels = _named("StatefulSet", "redis-sentinel")
    replicas = sentinels["spec"]["replicas"]
    service = sentinels["spec"]["serviceName"]
    assert addresses == [
        f"redis-sentinel-{i}.{service}.{NAMESPACE}.svc:26379" for i in range(replicas)
    ]
    depth = _trigger("redis-sentinel")["metadata"]
    assert depth["addresses"].split(",") == addresses
    assert (depth["sentinelMaster"], int(depth["databaseIndex"])) == (master, db)
    script = _config_map_data("redis-scripts")["sentinel.sh"]
    (monitor,) = re.findall(r"sentinel monitor (\S+) \S+ 6379 (\d+)", script)
    assert monitor[0] == master
    quorum = int(monitor[1])
    assert replicas // 2 < quorum <= replicas, "the quorum must be a majority of the sentinels"
    assert _named("PodDisruptionBudget", "redis-sentinel")["spec"]["minAvailable"] >= quorum
    assert f"get-master-addr-by-name {master}" in _config_map_data("redis-scripts")["redis.sh"]


# --- probes, commands, images ------------------------------------------------------------------


def test_http_probes_name_real_routes_on_the_served_port(settings: Settings) -> None:
    api_routes = {rule.rule for rule in create_app(settings).url_map.iter_rules()}
    # Flower's URLSpecs (and tuples in older releases); ".*" is its catch-all 404 page.
    patterns = [h.regex.pattern if hasattr(h, "regex") else h[0] for h in handlers]
    flower_routes = [re.compile(p) for p in patterns if p != ".*"]
    checked = 0
    for workload, container in _skuai_containers():
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            get = container.get(kind, {}).get("httpGet")
            if get is None:
                continue
            assert get["port"] in ports, (workload["metadata"]["name"], kind)
            assert str(ports[get["port"]]) == _option(container["command"], "--port")
            if container["command"][:2] == ["skuai", "api"]:
                assert get["path"] in api_routes, get
            else:
                assert any(r.fullmatch(get["path"]) for r in flower_routes), get
            checked += 1
    assert checked == 4
    api = _named("Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_services_reach_named_ports_of_their_pods() -> None:
    for service in _of_kind("Service"):
        selector = service["spec"]["selector"]
        pods = [_pod_spec(w) for w in _workloads() if _labels_match(selector, _template_labels(w))]
        assert pods, service["metadata"]["name"]
        names = {p["name"] for pod in pods for c in pod["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names, (service["metadata"]["name"], port)


def _template_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def test_celery_probes_ping_their_own_worker_node() -> None:
    workers = [(w, c) for w, c in _skuai_containers() if c["command"][:2] == ["skuai", "worker"]]
    assert len(workers) == 3
    for workload, container in workers:
        queues = _option(container["command"], "--queues").split(",")
        assert set(queues) <= set(ALL_QUEUES)
        name = _option(container["command"], "--name")
        for kind in ("readinessProbe", "livenessProbe"):
            probe = shlex.split(container[kind]["exec"]["command"][-1])
            assert _option(probe, "--destination") == f"{name}@$HOSTNAME", workload["metadata"]
            assert probe[:3] == ["exec", "celery", "-A"] and probe[3] == "worker.celery_app"


def test_images_commands_and_users_match_compose_and_the_dockerfiles() -> None:
    compose = _compose()
    for workload, container in _skuai_containers():
        service = compose[COMPOSE_SERVICE[workload["metadata"]["name"]]]
        default_image = re.search(r":-([^}]+)}", service["image"])
        assert default_image, service["image"]
        assert _image_name(container["image"]) == _image_name(default_image.group(1))
        if workload["metadata"]["name"] != "activate":
            assert container["command"] == service["command"], workload["metadata"]["name"]
        assert _pod_spec(workload)["securityContext"]["runAsUser"] == SKUAI_UID
    for dockerfile in ("api.Dockerfile", "worker.Dockerfile"):
        assert f"--uid {SKUAI_UID}" in (ROOT / "deploy" / dockerfile).read_text()
    api = _named("Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    gpu = _named("Deployment", "inference-gpu")["spec"]["template"]["spec"]["containers"][0]
    assert api["command"] == _dockerfile_cmd("api.Dockerfile")
    assert gpu["command"] == _dockerfile_cmd("worker.Dockerfile")
    for name in ("redis", "redis-sentinel"):
        redis_container = _pod_spec(_named("StatefulSet", name))["containers"][0]
        assert redis_container["image"] == compose["redis"]["image"]


# --- stopping, GPUs, storage -------------------------------------------------------------------


def test_graceful_stops_outlast_the_work_in_flight() -> None:
    compose = _compose()
    visibility = int(_config_map_data("skuai-settings")["SKUAI_VISIBILITY_TIMEOUT"])
    for name in ("inference-gpu", "inference-cpu", "webhook-worker"):
        grace = _pod_spec(_named("Deployment", name))["terminationGracePeriodSeconds"]
        # At least compose's stop_grace_period; shorter than waiting for a redelivery.
        assert _seconds(compose[COMPOSE_SERVICE[name]]["stop_grace_period"]) <= grace < visibility
        container = _pod_spec(_named("Deployment", name))["containers"][0]
        assert "preStop" not in container.get("lifecycle", {}), "SIGTERM itself is the signal"
    api = _pod_spec(_named("Deployment", "api"))
    pause = int(api["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert api["terminationGracePeriodSeconds"] >= pause + defaults.MAX_WAIT_SECONDS + 5
    for name in ("inference-gpu", "inference-cpu"):
        startup = _pod_spec(_named("Deployment", name))["containers"][0]["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= POOL_PROCESS_START_TIMEOUT


def test_each_gpu_worker_takes_one_gpu_and_one_process() -> None:
    pod = _pod_spec(_named("Deployment", "inference-gpu"))
    (container,) = pod["containers"]
    resources = container["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == 1
    assert _option(container["command"], "--concurrency") == "1"
    assert "--gpus" not in container["command"], "the device plugin shows the pod one GPU"
    assert "CUDA_VISIBLE_DEVICES" not in {item["name"] for item in container["env"]}
    assert set(_option(container["command"], "--queues").split(",")) == MODEL_QUEUES
    assert "nvidia.com/gpu" in {t["key"] for t in pod["tolerations"]}
    assert pod["nodeSelector"]
    assert "replicas" not in _named("Deployment", "inference-gpu")["spec"], "KEDA owns it"
    limit = _bytes(resources["limits"]["memory"])
    assert limit > defaults.WORKER_MAX_MEMORY_MB * 2**20, "the pool process is replaced first"
    cpu = _pod_spec(_named("Deployment", "inference-cpu"))["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in {**cpu["requests"], **cpu["limits"]}
    scaling = _scaled_object()["spec"]
    assert scaling["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "inference-gpu",
    }
    assert 1 <= scaling["minReplicaCount"] < scaling["maxReplicaCount"] == 10


def test_registry_volume_is_read_only_for_every_server() -> None:
    claim = _named("PersistentVolumeClaim", "skuai-registry")
    assert "ReadOnlyMany" in claim["spec"]["accessModes"]
    registry = _config_map_data("skuai-settings")["SKUAI_REGISTRY"]
    mounted = set()
    for workload in _workloads():
        pod = _pod_spec(workload)
        volumes = {
            v["name"]: v["persistentVolumeClaim"]
            for v in pod.get("volumes", [])
            if v.get("persistentVolumeClaim", {}).get("claimName") == "skuai-registry"
        }
        for container in pod["containers"]:
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volumes:
                    continue
                mounted.add(workload["metadata"]["name"])
                assert mount["mountPath"] == registry
                writer = workload["kind"] == "Job"  # the trainer, jobs/
                assert bool(mount.get("readOnly")) is not writer, workload["metadata"]["name"]
                assert bool(volumes[mount["name"]].get("readOnly")) is not writer
    assert {"api", "inference-gpu", "inference-cpu", "train"} <= mounted


def test_redis_memory_leaves_room_for_the_aof_rewrite() -> None:
    statefulset = _named("StatefulSet", "redis")
    container = _pod_spec(statefulset)["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    maxmemory = _bytes(env["REDIS_MAXMEMORY"])
    assert _bytes(container["resources"]["limits"]["memory"]) >= 2 * maxmemory
    storage = statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]
    assert _bytes(storage["storage"]) >= 2 * maxmemory
    script = _config_map_data("redis-scripts")["redis.sh"]
    assert "maxmemory-policy noeviction" in script and "appendonly yes" in script
    assert statefulset["spec"]["replicas"] == 3, "a primary and two replicas"
    assert "min-replicas-to-write 1" in script, "a primary cut off from its replicas stops"


# --- references --------------------------------------------------------------------------------


def test_every_reference_resolves() -> None:
    secrets = _example_secrets()
    config_maps = {doc["metadata"]["name"] for doc in _of_kind("ConfigMap")}
    claims = {doc["metadata"]["name"] for doc in _of_kind("PersistentVolumeClaim")}
    for workload, container in _containers():
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in config_maps
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]], (workload["metadata"]["name"], ref)
    for workload in _workloads():
        for volume in _pod_spec(workload).get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
    for auth in _of_kind("TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["key"] in secrets[ref["name"]]
    for trigger in _scaled_object()["spec"]["triggers"]:
        if "authenticationRef" in trigger:
            _named("TriggerAuthentication", trigger["authenticationRef"]["name"])
    _named("Deployment", _scaled_object()["spec"]["scaleTargetRef"]["name"])


def test_every_replicated_workload_has_one_disruption_budget() -> None:
    budgets = _of_kind("PodDisruptionBudget")
    for workload in _of_kind("Deployment", "StatefulSet"):
        name = workload["metadata"]["name"]
        covering = [
            b
            for b in budgets
            if _labels_match(b["spec"]["selector"]["matchLabels"], _template_labels(workload))
        ]
        assert len(covering) == (0 if name in WITHOUT_BUDGET else 1), name
    for budget in budgets:
        selector = budget["spec"]["selector"]["matchLabels"]
        assert [w for w in _workloads() if _labels_match(selector, _template_labels(w))]


# --- what the autoscaler reads -----------------------------------------------------------------


def test_autoscaler_reads_the_list_celery_fills_and_the_metrics_the_api_exports(
    own_db: Settings,
) -> None:
    """A real message sent the way the API sends a chunk lands in the list the queue-depth trigger
    reads, and the Prometheus query names metrics and queues the API's collector exports."""
    app = make_celery(own_db)
    try:
        enqueue_classify(app, ["job_kubernetes_test"], queue=INFERENCE, batch_id="batch_k8s")
    finally:
        app.close()
    conn = redis.Redis.from_url(own_db.redis_url)
    try:
        depth = _trigger("redis-sentinel")["metadata"]
        assert depth["listName"] == INFERENCE
        assert conn.llen(depth["listName"]) == 1
        exported: dict[str, dict[str, float]] = {}
        for family in ClusterCollector(conn).collect():
            for sample in family.samples:
                queue = sample.labels.get("queue")
                if queue is not None:
                    exported.setdefault(sample.name, {})[queue] = sample.value
    finally:
        conn.close()
    assert exported["skuai_queue_depth"][INFERENCE] == 1
    query = _trigger("prometheus")["metadata"]["query"]
    (metric,) = re.findall(r"\b(skuai_[a-z_]+)\b", query)
    assert metric in exported, sorted(exported)
    assert exported[metric][INFERENCE] >= 0
    (queues,) = re.findall(r'queue=~"([^"]+)"', query)
    assert set(queues.split("|")) == MODEL_QUEUES
    assert set(queues.split("|")) <= exported[metric].keys()
    assert query.startswith("max("), "every API replica reports the same cluster-wide value"


# --- the Redis start scripts, run for real ------------------------------------------------------

REDIS_PODS = {  # pod name -> its address in the private namespace, and its script
    "redis-0": ("127.0.1.10", "redis.sh"),
    "redis-1": ("127.0.1.11", "redis.sh"),
    "redis-2": ("127.0.1.12", "redis.sh"),
    "redis-sentinel-0": ("127.0.1.20", "sentinel.sh"),
    "redis-sentinel-1": ("127.0.1.21", "sentinel.sh"),
    "redis-sentinel-2": ("127.0.1.22", "sentinel.sh"),
}
TEST_REDIS_PASSWORD = "0123456789abcdef"


def _unshare() -> list[str] | None:
    """The command that runs a process in network, mount and PID namespaces of its own: as
    root, or as a user where user namespaces are allowed; None where neither works."""
    if not (shutil.which("unshare") and shutil.which("ip") and find_binary()):
        return None
    for prefix in (["unshare"], ["unshare", "--user", "--map-root-user"]):
        # A PID namespace too, whose processes all die with the test's (--kill-child).
        command = [*prefix, "--net", "--mount", "--pid", "--fork", "--kill-child"]
        probe = subprocess.run([*command, "unshare", "--uts", "true"], capture_output=True)
        if probe.returncode == 0:
            return command
    return None


UNSHARE = _unshare()


@pytest.mark.skipif(UNSHARE is None, reason="needs unshare (network, mount, UTS namespaces)")
def test_redis_scripts_bootstrap_fail_over_and_rejoin(tmp_path: Path) -> None:
    """20-redis.yaml's start scripts with real redis-server processes, each "pod" with its own
    hostname and address, names resolved as the cluster DNS would: all inside a private network
    and mount namespace, so nothing reaches the host's network or /etc/hosts."""
    command = [sys.executable, "-c", f"import {__name__} as t; t.run_redis_pods({str(tmp_path)!r})"]
    assert UNSHARE is not None
    done = subprocess.run(
        [*UNSHARE, *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    primary = f"redis-0.redis.{NAMESPACE}.svc"
    replicas = {f"redis-{i}.redis.{NAMESPACE}.svc" for i in (1, 2)}
    assert report["first"]["quorum"].startswith("OK 3 usable Sentinels"), report["first"]
    assert report["first"]["primary"] == primary
    assert report["first"]["replicas_of"] == [primary, primary]
    promoted = report["after_kill"]["primary"]
    assert promoted in replicas
    assert report["after_kill"] == {
        "primary": promoted,
        "kept": "1",
        "other_replica_of": promoted,
        "written": True,
    }
    assert report["rejoined"] == {"role": "slave", "replica_of": promoted, "kept": "1"}
    assert report["fresh_sentinel_watches"] == promoted
    assert report["failover_seconds"] < 30
    assert report["through_url"] == {"queued": 1, "written": "1", "queued_after_failover": 2}


def run_redis_pods(folder: str) -> None:
    """Inside the namespace: start the six pods, fail the primary over, restart it and a
    sentinel, and print what was observed as one JSON line."""
    root = Path(folder)
    hosts = root / "hosts"
    names = {name: f"{name}.{name.rsplit('-', 1)[0]}.{NAMESPACE}.svc" for name in REDIS_PODS}
    hosts.write_text("".join(f"{ip} {names[n]}\n" for n, (ip, _) in REDIS_PODS.items()))
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    _write_pod_scripts(root)
    env = {
        "PATH": f"{Path(find_binary() or '').parent}:/usr/bin:/bin",
        "POD_NAMESPACE": NAMESPACE,
        "REDIS_PASSWORD": TEST_REDIS_PASSWORD,
        "REDIS_MAXMEMORY": "64mb",
    }
    pods: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str) -> None:
        ip, script = REDIS_PODS[name]
        pod = root / name
        (pod / "data").mkdir(parents=True, exist_ok=True)
        pods[name] = subprocess.Popen(
            ["unshare", "--uts", "sh", "-c", f"hostname {name} && exec sh {root / script}"],
            env={**env, "POD_DIR": str(pod), "BIND_IP": ip},
            stdout=(pod / "log").open("ab"),
            stderr=subprocess.STDOUT,
        )

    def node(name: str) -> redis.Redis:
        port = 26379 if "sentinel" in name else 6379
        password = None if "sentinel" in name else TEST_REDIS_PASSWORD
        return redis.Redis(
            names[name], port, password=password, socket_timeout=2, decode_responses=True
        )

    def watched(sentinel: str) -> str | None:
        try:
            address: Any = node(sentinel).sentinel_get_master_addr_by_name("skuai")
        except redis.RedisError:
            return None
        return str(address[0]) if address else None

    def role(name: str) -> list[Any]:
        try:
            return list(node(name).role())
        except redis.RedisError:
            return []

    def follows(name: str, primary: str) -> bool:
        return role(name)[:2] == ["slave", names[primary]]

    def has_key(name: str, key: str) -> bool:
        try:
            return node(name).get(key) == "1"
        except redis.RedisError:
            return False

    sentinels = [n for n in REDIS_PODS if "sentinel" in n]
    replicas = ["redis-1", "redis-2"]
    report: dict[str, Any] = {}
    try:
        for name in REDIS_PODS:
            start(name)
        _poll(lambda: all(watched(s) == names["redis-0"] for s in sentinels), 60, "watch redis-0")
        for name in replicas:
            _poll(functools.partial(follows, name, "redis-0"), 30, f"{name} replicates")
        known = {names[n] for n in replicas}
        _poll(lambda: all(_knows(node(s), known) for s in sentinels), 30, "replicas known")
        report["first"] = {
            "primary": watched(sentinels[0]),
            "replicas_of": [role(n)[1] for n in replicas],
            "quorum": str(node(sentinels[0]).execute_command("SENTINEL", "CKQUORUM", "skuai")),
        }
        # The URL the manifests give every container (with this test's password) reaches the
        # primary through the sentinels: Celery's messages land in the list KEDA's trigger
        # reads, and the service's own client writes there too.
        url_settings = _manifest_redis_settings()
        _publish_chunk(url_settings)
        connect(url_settings).set("through-the-url", 1)
        report["through_url"] = {
            "queued": node("redis-0").llen(INFERENCE),
            "written": node("redis-0").get("through-the-url"),
        }
        node("redis-0").set("before-failover", 1)
        for name in replicas:
            _poll(functools.partial(has_key, name, "before-failover"), 10, "key replicated")
        pods["redis-0"].kill()
        pods["redis-0"].wait()
        killed = time.monotonic()

        def agreed() -> bool:
            views = {watched(s) for s in sentinels}
            return len(views) == 1 and views != {names["redis-0"]}

        _poll(agreed, 60, "failover")
        report["failover_seconds"] = round(time.monotonic() - killed, 1)
        promoted = next(n for n in replicas if names[n] == watched(sentinels[0]))
        (other,) = set(replicas) - {promoted}
        _poll(functools.partial(follows, other, promoted), 30, "the other replica follows")
        report["after_kill"] = {
            "primary": names[promoted],
            "kept": node(promoted).get("before-failover"),
            "other_replica_of": role(other)[1],
            # min-replicas-to-write 1 is met by the other replica.
            "written": bool(node(promoted).set("after-failover", 1)),
        }
        _publish_chunk(url_settings)  # the same URL follows the failover
        report["through_url"]["queued_after_failover"] = node(promoted).llen(INFERENCE)
        start("redis-0")  # its data folder kept, as its volume would be
        _poll(functools.partial(follows, "redis-0", promoted), 30, "redis-0 rejoins")
        _poll(functools.partial(has_key, "redis-0", "after-failover"), 30, "redis-0 synced")
        report["rejoined"] = {
            "role": role("redis-0")[0],
            "replica_of": role("redis-0")[1],
            "kept": node("redis-0").get("before-failover"),
        }
        pods["redis-sentinel-2"].terminate()
        pods["redis-sentinel-2"].wait()
        (root / "redis-sentinel-2" / "sentinel.conf").unlink()
        start("redis-sentinel-2")
        _poll(lambda: watched("redis-sentinel-2") is not None, 30, "fresh sentinel")
        report["fresh_sentinel_watches"] = watched("redis-sentinel-2")
    finally:
        for process in pods.values():
            process.kill()
            process.wait()
    print(json.dumps(report))


def _write_pod_scripts(root: Path) -> None:
    """The ConfigMap's scripts with each pod's folders and its own bind address: in a cluster
    every pod has its own network namespace and volumes; here all six share one."""
    for name, text in _config_map_data("redis-scripts").items():
        text = text.replace("dir /data", "dir $POD_DIR/data")
        for folder in ("/run/redis", "/run/sentinel"):
            text = text.replace(folder, "$POD_DIR")
        for port in ("6379", "26379"):
            text = text.replace(f'echo "port {port}"', f'echo "port {port}"; echo "bind $BIND_IP"')
        (root / name).write_text(text)


def _manifest_redis_settings() -> Settings:
    """Settings with the manifests' SKUAI_REDIS_URL and the test's password."""
    placeholder = _example_secrets()["skuai-redis"]["password"]
    url = _redis_url().replace(placeholder, TEST_REDIS_PASSWORD)
    return Settings.from_env({"SKUAI_REDIS_URL": url})


def _publish_chunk(settings: Settings) -> None:
    """Send one classify message the way the API sends a batch chunk."""
    app = make_celery(settings)
    try:
        enqueue_classify(app, ["job_kubernetes"], queue=INFERENCE, batch_id="batch_kubernetes")
    finally:
        app.close()


def _knows(sentinel: redis.Redis, replicas: set[str]) -> bool:
    """Whether this sentinel knows its two peers and sees these replicas healthy and in sync:
    in a cluster long true before any failover; here the test waits for it."""
    try:
        peers = sentinel.execute_command("SENTINEL", "SENTINELS", "skuai")
        states = sentinel.execute_command("SENTINEL", "REPLICAS", "skuai")
    except redis.RedisError:
        return False
    healthy = {  # flags as Redis writes them, e.g. "slave" or "s_down,slave,disconnected"
        str(state["name"]).split(":")[0]
        for state in states
        if state["flags"] == "slave" and state["master-link-status"] == "ok"
    }
    return len(peers) == 2 and replicas <= healthy


def _poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.2)
