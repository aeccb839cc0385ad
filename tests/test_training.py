"""Training writes a complete registry version; the registry and its command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared.errors import ConfigError, ModelNotFound
from shared.settings import Settings
from tests.support.images import catalog_images
from tests.support.processes import run_skuai
from training.registry import Registry


def test_version_folder_is_complete(trained: str, settings: Settings) -> None:
    folder = settings.registry_dir / trained
    for name in (
        "stage1.keras",
        "stage2.keras",
        "labels.json",
        "metrics.json",
        "config.json",
        "report.md",
        "confusion.png",
    ):
        assert (folder / name).is_file(), name
    assert not (folder / "checkpoints").exists()
    labels = json.loads((folder / "labels.json").read_text())
    assert len(labels["models"]) == 3 and all(len(s) == 2 for s in labels["skus"].values())
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["split"] == {"train": 42, "val": 12, "test": 6}
    for key in ("top1", "top5"):
        assert 0 <= metrics["stage1"][key] <= 1
    assert set(metrics["end_to_end"]) >= {
        "model_top1",
        "sku_top1",
        "sku_top5",
        "expected_calibration_error",
        "per_sku",
    }
    assert json.loads((folder / "config.json").read_text())["input_size"] == 32
    assert "end-to-end SKU top-1" in (folder / "report.md").read_text()


def test_saved_cascade_predicts_like_serving_does(
    trained: str, settings: Settings, tiny_catalog: Path
) -> None:
    from shared.images import decode
    from training.cascade import Cascade

    registry = Registry(settings.registry_dir)
    cascade = Cascade.load(registry.path(trained), version=trained)
    images = np.stack(
        [decode(p.read_bytes(), size=32, max_pixels=10**6) for p in catalog_images(tiny_catalog, 7)]
    )
    results = cascade.predict(images)
    assert len(results) == 7
    stage1 = cascade.model_probs(images)
    assert stage1.shape == (7, 3) and np.allclose(stage1.sum(axis=1), 1, atol=1e-4)
    # Stage 1 sees grayscale only: a hue change that keeps luma must not move it much (rounding
    # luma to whole levels moves the trained tiny stage 1 by up to about 0.03).
    swapped = images[:, :, :, ::-1].copy()
    gray = lambda x: x.astype(np.float32) @ np.array([0.299, 0.587, 0.114])  # noqa: E731
    same_luma = np.repeat(gray(images)[..., None], 3, axis=-1).round().astype(np.uint8)
    assert np.allclose(cascade.model_probs(same_luma), stage1, atol=5e-2)
    assert swapped.shape == images.shape


def test_registry_lists_and_activates(trained: str, settings: Settings, tmp_path: Path) -> None:
    registry = Registry(settings.registry_dir)
    assert registry.active() == trained
    assert [v.name for v in registry.versions()] == [trained]
    with pytest.raises(ModelNotFound, match="no model version 'v99'"):
        registry.activate("v99")
    assert Registry(tmp_path / "empty").versions() == []
    with pytest.raises(ModelNotFound, match="skuai train"):
        Registry(tmp_path / "empty").require_active()


def test_models_commands(trained: str, service_env: dict[str, str]) -> None:
    listed = run_skuai("models", "list", "--json", env=service_env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["version"] == trained
    assert json.loads(listed.stdout)[0]["active"] is True
    missing = run_skuai("models", "activate", "v404", env=service_env)
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("error: no model version 'v404'")


def test_unwritable_registry_is_a_clear_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "registry").write_text("a file where the registry folder should be")
    with pytest.raises(ConfigError, match="cannot create the registry"):
        Registry(locked / "registry" / "inner").new_version()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "/nonexistent/data"], "dataset folder /nonexistent/data does not exist"),
        (["train", ".", "--weights", "/no/such.h5"], "--weights /no/such.h5: no such file"),
        (["train", ".", "--input-size", "50", "--weights", "none"], "multiple of 32"),
        (["synth", "/tmp/x", "--models", "0"], "models"),
    ],
)
def test_training_user_errors_are_one_line(args: list[str], fragment: str, tmp_path: Path) -> None:
    out = (
        run_skuai(*args, "--registry", str(tmp_path / "r"))
        if args[0] == "train"
        else run_skuai(*args)
    )
    assert out.returncode == 1, out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], out.stderr


def test_train_command_logs_progress_lines_when_not_on_a_terminal(
    tiny_catalog: Path, tmp_path: Path
) -> None:
    registry = tmp_path / "registry"
    out = run_skuai(
        *("train", str(tiny_catalog), "--registry", str(registry), "--input-size", "32"),
        *("--width", "0.0625", "--epochs", "1", "--batch-size", "16", "--weights", "none"),
        *("--precision", "fp32"),
    )
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    # stderr is a pipe here, as in a log file: progress comes as lines while it happens
    assert any(line.endswith("training stage 1 (grayscale -> 3 models): 3 steps") for line in lines)
    assert any(
        "training stage 2 (colour -> 6 SKUs within the model): 100% (3/3)" in line for line in lines
    )
    assert any("evaluating on the test split: 100%" in line for line in lines), out.stderr
    assert f"version v1 written to {registry / 'v1'} (active)" in out.stderr
    listed = run_skuai("models", "list", "--registry", str(registry))
    assert listed.stdout.startswith("* v1 "), listed.stdout


def test_log_events_write_a_line_per_tenth_of_a_phase() -> None:
    from skuai.console import LogEvents

    lines: list[str] = []
    now = [0.0]
    events = LogEvents(lines.append, clock=lambda: now[0])
    advance = events.phase("fitting", 40)
    for _ in range(40):
        now[0] += 3
        advance(1)
    events.phase("saving")  # no total: one line, nothing to count
    events.close()
    assert lines[0] == "fitting: 40 steps"
    progress = lines[1:-2]
    assert [line.split(":")[1].split()[0] for line in progress] == [
        f"{p}%" for p in range(10, 101, 10)
    ]
    assert progress[0] == "fitting: 10% (4/40) in 12 s"
    assert progress[-1] == "fitting: 100% (40/40) in 2 min 00 s"
    assert lines[-2:] == ["saving", "done"]
    jump = LogEvents(lines.append).phase("big steps", 10)
    lines.clear()
    jump(7)  # several tenths at once: one line
    jump(3)
    assert [line.split(" (")[0] for line in lines] == ["big steps: 70%", "big steps: 100%"]
