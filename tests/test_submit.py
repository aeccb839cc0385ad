"""`skuai submit`: folders and archives in parts, progress, results files, and resuming."""

from __future__ import annotations

import csv
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.support.images import catalog_images
from tests.support.processes import run_skuai

pytestmark = pytest.mark.usefixtures("inference_worker")


def _submit(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_skuai("submit", *args, env=env, timeout=180)


@pytest.fixture()
def folder(tiny_catalog: Path, tmp_path: Path) -> Path:
    out = tmp_path / "photos"
    out.mkdir()
    for i, p in enumerate(catalog_images(tiny_catalog, 7)):
        (out / f"{i}.png").write_bytes(p.read_bytes())
    return out


def test_folder_and_archive_to_csv(
    folder: Path, api_url: str, service_env: dict[str, str], tmp_path: Path
) -> None:
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(folder / "0.png", "inside/a.png")
    out = tmp_path / "results.csv"
    run = _submit(
        [str(folder), str(archive), "--api", api_url, "--part-size", "3", "--out", str(out)],
        service_env,
    )
    assert run.returncode == 0, run.stderr
    assert "7 images and 1 archives" in run.stderr
    rows = list(csv.DictReader(out.open()))
    assert sorted(r["ref"] for r in rows) == sorted(
        [f"{i}.png" for i in range(7)] + ["inside/a.png"]
    )
    assert all(r["status"] == "succeeded" and r["sku"] for r in rows)


def test_resume_skips_parts_the_server_has(
    folder: Path, api_url: str, service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**service_env, "SKUAI_HOME": str(tmp_path / "home")}
    first = _submit([str(folder), "--api", api_url, "--part-size", "2"], env)
    assert first.returncode == 0, first.stderr
    [state_file] = (tmp_path / "home" / "submits").glob("*.json")
    state = json.loads(state_file.read_text())
    assert len(state["parts"]) == 4
    original = [p["batch_id"] for p in state["parts"]]
    # Interrupted before the last part's answer was saved: the server has it, the client not.
    state["parts"][-1]["batch_id"] = None
    state_file.write_text(json.dumps(state))

    out = tmp_path / "results.jsonl"
    second = _submit([str(folder), "--api", api_url, "--part-size", "2", "--out", str(out)], env)
    assert second.returncode == 0, second.stderr
    assert "resuming: 3 of 4 parts already on the server" in second.stderr
    resumed = [p["batch_id"] for p in json.loads(state_file.read_text())["parts"]]
    assert resumed == original  # the Idempotency-Key returned the same batch: no duplicate
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 7 and {line["batch_id"] for line in lines} == set(original)


def test_network_error_says_how_to_resume(folder: Path, service_env: dict[str, str]) -> None:
    run = _submit([str(folder), "--api", "http://127.0.0.1:9"], service_env)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert lines[-1].startswith("error: cannot reach the API")
    assert lines[-1].endswith("run the same command again to resume")
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [(["/no/such/dir"], "no such file or folder"), (["--out", "x.xlsx", "."], ".csv or .jsonl")],
)
def test_submit_user_errors(args: list[str], message: str, service_env: dict[str, str]) -> None:
    run = _submit(args, service_env)
    assert run.returncode == 1 and message in run.stderr and "Traceback" not in run.stderr
