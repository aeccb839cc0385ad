"""`skuai models export`: a version's two stages as TensorFlow Lite or ONNX files a phone or camera
app runs, with the label map and a manifest of the inputs each stage expects (docs/edge.md).

The exported stages output probabilities only: the edge answer is the top-k of the two-stage
flow (stage 1's top model, then stage 2's SKUs within it). The open-world decision (sku, model or
unknown) needs the training photos' embeddings and stays on the server."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import InvalidArgument
from shared.images import BACKGROUND

FORMATS = ("tflite", "onnx")
SUFFIX = {"tflite": ".tflite", "onnx": ".onnx"}
CALIBRATION_IMAGES = 200  # training photos int8 calibration sees (at most)


def stage_files(fmt: str, int8: bool) -> tuple[str, str]:
    """The file names of the two exported stages."""
    tag = ".int8" if int8 else ""
    return f"stage1{tag}{SUFFIX[fmt]}", f"stage2{tag}{SUFFIX[fmt]}"


def export_version(
    folder: Path,
    out: Path,
    *,
    fmt: str,
    int8: bool,
    calibration: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Write both stages, labels.json and manifest.json of the version in `folder` to `out`.
    `calibration`: (RGB images, model indices) from the training split, for ONNX int8."""
    import keras

    import training.architecture  # noqa: F401 - registers the custom layers

    if fmt not in FORMATS:
        raise InvalidArgument(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    if int8 and fmt == "onnx" and calibration is None:
        raise InvalidArgument(
            "ONNX int8 needs calibration photos from the version's training split"
        )
    config = json.loads((folder / "config.json").read_text())
    size = int(config["input_size"])
    stages = [
        keras.saving.load_model(folder / name, compile=False)
        for name in ("stage1.keras", "stage2.keras")
    ]
    out.mkdir(parents=True, exist_ok=True)
    names = stage_files(fmt, int8)
    writer = _write_tflite if fmt == "tflite" else _write_onnx
    for index, (model, name) in enumerate(zip(stages, names, strict=True)):
        writer(model, out / name, size=size, second=index == 1, int8=int8, calibration=calibration)
    shutil.copyfile(folder / "labels.json", out / "labels.json")
    manifest = _manifest(folder.name, fmt, int8, size, names)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _manifest(
    version: str, fmt: str, int8: bool, size: int, names: tuple[str, str]
) -> dict[str, Any]:
    """What an app needs to feed and read the stages (docs/edge.md)."""
    image = {
        "name": "image",
        "shape": ["N", size, size, 3],
        "dtype": "float32",
        "meaning": "RGB pixel values 0-255 (not normalised: the model normalises itself)",
    }
    return {
        "version": version,
        "format": fmt,
        "int8": int8,
        "preprocessing": {
            "size": size,
            "resize": "keep the aspect ratio: scale the longer side to size (bilinear), pad the "
            "shorter one evenly",
            "pad_colour_rgb": list(BACKGROUND),
            "exif_orientation": "apply before resizing",
        },
        "stage1": {
            "file": names[0],
            "inputs": [image],
            "output": "p(model): one probability per labels.json 'models' entry",
        },
        "stage2": {
            "file": names[1],
            "inputs": [
                image,
                {"name": "model", "shape": ["N"], "dtype": "int32", "meaning": "stage 1's model"},
            ],
            "output": "p(SKU | model): one per labels.json SKU (in model order), 0 outside it",
        },
        "labels": "labels.json",
        "decision": "top-k only: the open-world decision (sku/model/unknown) is server-side",
    }


def _write_tflite(
    model: Any, path: Path, *, size: int, second: bool, int8: bool, calibration: Any
) -> None:
    """A TFLite flatbuffer of `model` with a dynamic batch, converted from its SavedModel export
    (a concrete function of the Keras 3 model converts without its variables: NaNs). int8:
    dynamic-range quantization, int8 weights and float activations. Full-integer quantization
    (activations too, calibrated) was measured and refused: stage 2's -1e9 mask before its
    softmax sets the quantization range of the logits, which then all round to one value (SKU
    top-1 29% against 99% at demo scale), and stage 1 lost 4 points (docs/edge.md)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as scratch:
        model.export(scratch, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(scratch)
        if int8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        path.write_bytes(converter.convert())


def _write_onnx(
    model: Any, path: Path, *, size: int, second: bool, int8: bool, calibration: Any
) -> None:
    """An ONNX model of `model`; int8: static quantization as `skuai models activate
    --precision int8` does it (training/quantize.py)."""
    from training.quantize import export_onnx, quantize_onnx

    sample_images = np.zeros((1, size, size, 3), np.float32)
    sample: Any = (
        {"image": sample_images, "model": np.zeros((1,), np.int32)} if second else sample_images
    )
    if not int8:
        export_onnx(model, path, sample)
        return
    images, models = calibration
    images = images[:CALIBRATION_IMAGES].astype(np.float32)
    feeds = (
        {"image": images, "model": models[: len(images)].astype(np.int32)}
        if second
        else {"image": images}
    )
    with tempfile.TemporaryDirectory() as scratch:
        plain = Path(scratch) / path.name.replace(".int8", "")
        export_onnx(model, plain, sample)
        quantize_onnx(plain, path, feeds, scratch=Path(scratch))
