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
import re
import shlex
import subprocess
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import redis
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
from shared.settings import Settings, variable
from tests.support.kubernetes import (
    COMPOSE_SERVICE,
    DOCUMENTS,
    K8S_VERSIONS,
    KEDA_SCHEMA,
    NAMESPACE,
    ROOT,
    SKUAI_UID,
    WITHOUT_BUDGET,
    _bytes,
    _compose,
    _config_map_data,
    _containers,
    _dockerfile_cmd,
    _environment,
    _example_secrets,
    _image_name,
    _labels_match,
    _named,
    _of_kind,
    _option,
    _pod_spec,
    _redis_url,
    _scaled_object,
    _seconds,
    _sentinel_parts,
    _skuai_containers,
    _trigger,
    _workloads,
)
from web.app import create_app

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
