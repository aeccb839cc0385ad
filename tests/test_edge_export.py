"""`skuai models export`: the session's tiny version as TFLite and ONNX files, run with the TFLite
Interpreter and ONNX Runtime, against the Keras version on its test split (and, for a larger
sample, on every photo of the tiny catalog)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from shared.settings import Settings
from skuai.cli import cli
from training.labels import Labels


def _export(settings: Settings, version: str, out: Path, *args: str) -> dict:
    result = CliRunner().invoke(
        cli,
        [
            *("models", "export", version, "--registry", str(settings.registry_dir)),
            *("--out", str(out), *args, "--json"),
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def _catalog_agreement(out: Path, folder: Path, catalog: Path) -> dict:
    """Agreement on every photo of the catalog (train, val and test: more than the 6 tested)."""
    from training.dataset import scan
    from training.edge_check import agreement, exported_stages, keras_stages
    from training.loading import load_arrays

    labels = Labels.load(folder / "labels.json")
    _, samples = scan(catalog)
    photos = load_arrays(samples, labels, size=32)
    return agreement(exported_stages(out), keras_stages(folder), photos.images, photos.skus)


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_float_export_agrees_with_keras(
    fmt: str, trained: str, settings: Settings, tiny_catalog: Path, tmp_path: Path
) -> None:
    out = tmp_path / fmt
    result = _export(settings, trained, out, "--format", fmt)
    manifest = json.loads((out / "manifest.json").read_text())
    for name in (manifest["stage1"]["file"], manifest["stage2"]["file"], "labels.json"):
        assert (out / name).stat().st_size > 0
    assert manifest["preprocessing"]["size"] == 32
    check = result["check"]
    assert check["images"] > 0
    assert check["sku_top1_agreement"] >= 0.99, check
    everything = _catalog_agreement(out, settings.registry_dir / trained, tiny_catalog)
    assert everything["sku_top1_agreement"] >= 0.99, everything


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_int8_export_loses_at_most_a_point(
    fmt: str, trained: str, settings: Settings, tmp_path: Path
) -> None:
    from training.edge_check import exported_stages

    out = tmp_path / f"{fmt}-int8"
    check = _export(settings, trained, out, "--format", fmt, "--int8")["check"]
    assert check["exported_sku_top1"] >= check["keras_sku_top1"] - 0.01, check
    # the stage-2 mask survives quantization: no probability outside the given model
    labels = Labels.load(settings.registry_dir / trained / "labels.json")
    _, second = exported_stages(out)
    probs = second(np.full((2, 32, 32, 3), 128, np.float32), np.zeros(2, np.int32))
    outside = [i for i in range(len(labels.skus)) if i not in labels.membership[0]]
    assert np.all(probs[:, outside] <= 1e-6)


def test_export_refuses_unknown_version_and_format(settings: Settings, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["models", "export", "v999", "--registry", str(settings.registry_dir)]
    unknown = runner.invoke(cli, [*base, "--format", "onnx", "--out", str(tmp_path)])
    assert unknown.exit_code == 1
    assert "v999" in unknown.output and "Traceback" not in unknown.output
    bad_format = runner.invoke(cli, [*base, "--format", "coreml"])
    assert bad_format.exit_code == 2 and "coreml" in bad_format.output
