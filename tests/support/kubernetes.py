"""Reading deploy/kubernetes/ for the tests of tests/test_kubernetes.py and
tests/test_kubernetes_redis.py: the manifests, their objects, and what they say."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
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
