"""`skuai models export VERSION --format tflite|onnx [--int8]`: the two stages and the label map as
files for phones and cameras (training/edge_export.py, docs/edge.md), checked against the Keras
version on its test split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from skuai.cli_base import fail, settings
from skuai.console import console
from training.edge_export import FORMATS


@click.command("export")
@click.argument("version")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True)
@click.option(
    "--int8",
    is_flag=True,
    help="int8: ONNX static (calibrated on training photos), TFLite dynamic-range weights.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Output folder [default: the version's edge/FORMAT[-int8]/].",
)
@click.option("--registry", type=click.Path(path_type=Path), default=None)
@click.option(
    "--no-check",
    is_flag=True,
    help="Skip comparing the exported files with the Keras version on its test split.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and check as JSON.")
def models_export(
    version: str,
    fmt: str,
    int8: bool,
    out: Path | None,
    registry: Path | None,
    no_check: bool,
    as_json: bool,
) -> None:
    """Export VERSION's two stages, labels.json and manifest.json for on-device inference."""
    from skuai.quiet import import_tensorflow_quietly
    from training.registry import Registry

    folder = Registry(registry or settings().registry_dir).path(version)
    target = out or folder / "edge" / (fmt + ("-int8" if int8 else ""))
    import_tensorflow_quietly()
    result = _export(folder, target, fmt, int8, check=not no_check)
    if as_json:
        click.echo(json.dumps(result))
        return
    console.print(f"{version} exported as {fmt}{' int8' if int8 else ''} to {target}")
    check = result.get("check")
    if check:
        console.print(
            f"  test split ({check['images']} photos): SKU top-1 agreement with Keras "
            f"{check['sku_top1_agreement']:.2%}; SKU top-1 {check['exported_sku_top1']:.2%} "
            f"exported vs {check['keras_sku_top1']:.2%} Keras"
        )


def _export(folder: Path, target: Path, fmt: str, int8: bool, *, check: bool) -> dict[str, Any]:
    """Export, then (unless told not to) measure agreement on the version's test split."""
    from training.edge_check import agreement, exported_stages, keras_stages
    from training.edge_data import version_photos
    from training.edge_export import export_version

    calibration = None
    if int8 and fmt == "onnx":  # TFLite's int8 is dynamic-range: no calibration
        photos = version_photos(folder, "train", spread=True)
        calibration = (photos.images, photos.models)
    test = version_photos(folder, "test") if check else None
    manifest = export_version(folder, target, fmt=fmt, int8=int8, calibration=calibration)
    result: dict[str, Any] = {"out": str(target), "manifest": manifest}
    if test is not None:
        if len(test.skus) == 0:
            fail(f"the test split of {folder.name} has no readable photos to check against")
        measured = agreement(exported_stages(target), keras_stages(folder), test.images, test.skus)
        result["check"] = measured
        (target / "check.json").write_text(json.dumps(measured, indent=2) + "\n")
    return result
