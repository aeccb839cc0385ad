"""deploy/kubernetes/20-redis.yaml's start scripts run for real: three Redis pods and three
sentinels in a private network namespace bootstrap, fail over and rejoin (split from
tests/test_kubernetes.py, which checks the manifests offline)."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from shared.queues import (
    INFERENCE,
    enqueue_classify,
    make_celery,
)
from shared.redis_client import connect
from shared.settings import Settings
from skuai.redis_server import find_binary
from tests.support.kubernetes import (
    NAMESPACE,
    ROOT,
    _config_map_data,
    _example_secrets,
    _redis_url,
)

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
