"""The API never imports TensorFlow: checked in a fresh interpreter and in the live process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from skuai.bench.procs import tree
from tests.support.http import http
from tests.support.images import sample_image
from tests.support.processes import ApiServer

PROBE = """
import sys
from web.app import create_app
app = create_app()
client = app.test_client()
client.get("/healthz"); client.get("/openapi.json"); client.get("/v1/jobs/job_x")
client.post("/v1/jobs", data={"image": (open(sys.argv[1], "rb"), "a.png")})
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "keras"})
print(",".join(loaded) or "none")
"""


def test_fresh_interpreter_serving_requests_loads_no_tensorflow(
    service_env: dict[str, str], tiny_catalog: Path
) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(sample_image(tiny_catalog))],
        env=service_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "none"


def test_running_api_processes_have_no_tensorflow_mapped(
    api_server: ApiServer, tiny_catalog: Path
) -> None:
    image = sample_image(tiny_catalog)
    response = http.post(f"{api_server.url}/v1/jobs", files={"image": image.open("rb")}, timeout=10)
    assert response.status_code in (202, 503)
    pids = tree(api_server.process.pid)
    assert len(pids) >= 2  # the gunicorn arbiter and its worker
    for pid in pids:
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "tensorflow" not in maps and "keras" not in maps, f"pid {pid} loaded TensorFlow"
    assert os.path.exists(f"/proc/{api_server.process.pid}")
