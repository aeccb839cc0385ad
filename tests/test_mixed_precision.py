"""Mixed-precision training: 16-bit compute while fitting, float32 versions on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared.cpu import cpu_has_bf16, native_precisions
from tests.conftest import TINY_CASCADE
from training.config import TrainConfig


def test_bf16_training_saves_a_float32_version(tiny_catalog: Path, tmp_path: Path) -> None:
    import keras

    from training.cascade import Cascade
    from training.loading import load_arrays
    from training.registry import Registry
    from training.train import train

    config = TrainConfig(**TINY_CASCADE, epochs=1, precision="bf16")
    outcome = train(tiny_catalog, Registry(tmp_path / "registry"), config)
    folder, metrics = outcome.path, outcome.metrics

    assert metrics["training"]["precision"] == "bf16"
    assert json.loads((folder / "config.json").read_text())["trained_in"] == "bf16"
    assert "Trained in mixed precision (bf16 compute)" in (folder / "report.md").read_text()
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after training
    for name in ("stage1.keras", "stage2.keras"):
        model = keras.saving.load_model(folder / name, compile=False)
        computes = {layer.dtype_policy.compute_dtype for layer in model.layers}
        assert computes == {"float32"}, (name, computes)
        assert {v.dtype for v in model.weights} == {"float32"}, name

    # The saved float32 version gives the metrics the run reported.
    from training.dataset import scan, split

    labels, samples = scan(tiny_catalog)
    test = load_arrays(split(samples, seed=0).test, labels, size=32)
    cascade = Cascade.load(folder, version=outcome.version)
    predicted = cascade.model_probs(test.images).argmax(axis=1)
    top1 = float(np.mean(predicted == test.models))
    assert top1 == pytest.approx(metrics["stage1"]["top1"], abs=1e-6)


def test_auto_precision_follows_the_hardware() -> None:
    import tensorflow as tf

    from training.mixed_precision import resolve

    if tf.config.list_physical_devices("GPU"):
        expected = "fp16"
    else:
        expected = "bf16" if cpu_has_bf16() else "fp32"
    assert resolve("auto") == expected
    assert resolve("fp32") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve("int4")


def test_training_precision_is_validated() -> None:
    with pytest.raises(ValueError, match="--precision must be one of auto, fp32, bf16, fp16"):
        TrainConfig(precision="int8")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu sse avx512f avx512_bf16", True), ("fpu amx_bf16 amx_tile", True), ("fpu avx2", False)],
)
def test_cpu_bf16_units_come_from_the_cpu_flags(flags: str, expected: bool, tmp_path: Path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert cpu_has_bf16(str(cpuinfo)) is expected
    assert cpu_has_bf16(str(tmp_path / "missing")) is False


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("fpu avx2", ("fp32",)),
        ("fpu avx2 avx_vnni", ("fp32", "int8")),
        ("fpu avx512f avx512_vnni avx512_bf16", ("fp32", "bf16", "int8")),
        ("fpu amx_bf16 amx_int8 amx_tile", ("fp32", "bf16", "int8")),
    ],
)
def test_native_precisions_come_from_the_cpu_flags(
    flags: str, native: tuple[str, ...], tmp_path: Path
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert native_precisions(str(cpuinfo)) == native
    assert native_precisions(str(tmp_path / "missing")) == ("fp32",)


def test_bench_times_fp32_the_served_precision_and_the_ones_asked_for() -> None:
    from skuai.bench.harness import raw_precisions

    assert raw_precisions(("int8",), "fp32") == ("fp32", "int8")
    assert raw_precisions(("fp32",), "bf16") == ("fp32", "bf16")  # the served one is timed
    assert raw_precisions(None, "fp32") == native_precisions()  # default: what the CPU runs
    assert raw_precisions(("bf16",), "bf16") == ("bf16",)  # fp32 only when asked for
