"""Reduced precision (int8, bf16): the accuracy check that gates it at activation, and the
reduced-precision cascades answering like fp32."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from shared.images import decode
from shared.settings import Settings
from tests.support.images import catalog_images
from tests.support.processes import run_skuai
from training.cascade import Cascade
from training.precision import MAX_DROP_POINTS, _verdict, precision_allowed
from training.registry import Registry


def _metrics(top1: float) -> dict:
    return {"end_to_end": {"sku_top1": top1}, "test_images": 200}


@pytest.mark.parametrize(
    ("fp32", "int8", "allowed"), [(0.97, 0.97, True), (0.97, 0.966, True), (0.97, 0.96, False)]
)
def test_verdict_allows_at_most_half_a_point(fp32: float, int8: float, allowed: bool) -> None:
    verdict = _verdict(_metrics(fp32), _metrics(int8), 1.0, "int8")
    assert verdict["allowed"] is allowed
    assert verdict["drop_points"] == pytest.approx((fp32 - int8) * 100, abs=1e-3)
    assert verdict["max_drop_points"] == MAX_DROP_POINTS


@pytest.fixture(scope="module")
def copied(trained: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("int8") / "registry"
    shutil.copytree(settings.registry_dir / trained, root / trained)
    return root


def test_activate_with_int8_quantizes_checks_and_decides(
    copied: Path, trained: str, tiny_catalog: Path
) -> None:
    run = run_skuai("models", "activate", trained, "--precision", "int8", "--registry", str(copied))
    folder = copied / trained
    verdict = json.loads((folder / "precision.json").read_text())["int8"]
    assert (folder / "stage1.int8.onnx").is_file() and (folder / "stage2.int8.onnx").is_file()
    assert "int8 SKU top-1" in run.stdout, run.stderr
    assert verdict["allowed"] is (verdict["drop_points"] <= MAX_DROP_POINTS)
    assert precision_allowed(folder, "int8") is verdict["allowed"]
    assert (run.returncode == 0) is verdict["allowed"]
    assert (Registry(copied).active() == trained) is verdict["allowed"]

    # The int8 cascade answers in the same shape and mostly agrees with fp32.
    images = np.stack(
        [
            decode(p.read_bytes(), size=32, max_pixels=10**6)
            for p in catalog_images(tiny_catalog, 12)
        ]
    )
    fp32 = Cascade.load(folder, version=trained).predict(images)
    int8 = Cascade.load(folder, version=trained, precision="int8").predict(images)
    assert len(int8) == 12 and all(len(r["candidates"]) <= 5 for r in int8)
    same = sum(a["model"]["label"] == b["model"]["label"] for a, b in zip(fp32, int8, strict=True))
    assert same >= 9


def test_activate_with_bf16_checks_and_keeps_other_verdicts(
    copied: Path, trained: str, tiny_catalog: Path
) -> None:
    folder = copied / trained
    (folder / "precision.json").write_text(json.dumps({"int8": {"allowed": True}}))
    activate = ["models", "activate", trained, "--precision", "bf16", "--registry", str(copied)]
    run = run_skuai(*activate)
    verdicts = json.loads((folder / "precision.json").read_text())
    assert verdicts["int8"] == {"allowed": True}  # an earlier verdict is kept
    verdict = verdicts["bf16"]
    assert "bf16 SKU top-1" in run.stdout, run.stderr
    assert verdict["allowed"] is (verdict["drop_points"] <= MAX_DROP_POINTS)
    assert precision_allowed(folder, "bf16") is verdict["allowed"]
    assert (run.returncode == 0) is verdict["allowed"]


# bf16 moves the trained tiny cascade's probabilities by up to about 0.06 (0.05 held only while
# the session's version answered near-uniform probabilities)
@pytest.mark.parametrize(("precision", "tolerance"), [("fp16", 0.02), ("bf16", 0.1)])
def test_mixed_precision_cascade_matches_fp32(
    precision: str, tolerance: float, trained: str, settings: Settings, tiny_catalog: Path
) -> None:
    """fp16 (the GPU path) and bf16 (CPUs with BF16 units): the version rebuilt by the shared
    builder with 16-bit compute answers like fp32 (bfloat16 keeps fewer mantissa bits)."""
    folder = settings.registry_dir / trained
    images = np.stack(
        [decode(p.read_bytes(), size=32, max_pixels=10**6) for p in catalog_images(tiny_catalog, 8)]
    )
    fp32 = Cascade.load(folder, version=trained)
    reduced = Cascade.load(folder, version=trained, precision=precision)
    assert reduced.precision == precision
    assert np.allclose(reduced.model_probs(images), fp32.model_probs(images), atol=tolerance)
    sku = np.array([0] * 8, dtype=np.int32)
    assert np.allclose(reduced.sku_probs(images, sku), fp32.sku_probs(images, sku), atol=tolerance)
    with pytest.raises(ValueError, match="unknown precision"):
        Cascade.load(folder, version=trained, precision="bf8")
