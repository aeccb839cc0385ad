"""Running exported stages (TFLite Interpreter, ONNX Runtime) the way an app does, and checking
that they answer as the Keras version does: the two-stage flow of docs/edge.md (stage 1's top
model, then stage 2's best SKU within it), which is also the server's top-1 answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# images (N, S, S, 3) float32 [, model indices (N,) int32] -> probabilities
StageFn = Callable[..., np.ndarray]


def exported_stages(out: Path) -> tuple[StageFn, StageFn]:
    """The two exported stages in `out` (manifest.json names them) as functions of arrays."""
    manifest = json.loads((out / "manifest.json").read_text())
    files = (out / manifest["stage1"]["file"], out / manifest["stage2"]["file"])
    load = _tflite_stage if manifest["format"] == "tflite" else _onnx_stage
    return load(files[0]), load(files[1])


def _tflite_stage(path: Path) -> StageFn:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=2)
    inputs = interpreter.get_input_details()
    output = interpreter.get_output_details()[0]["index"]

    def run(images: np.ndarray, models: np.ndarray | None = None) -> np.ndarray:
        n = len(images)
        for detail in inputs:
            interpreter.resize_tensor_input(detail["index"], [n, *detail["shape"][1:]])
        interpreter.allocate_tensors()
        for detail in inputs:  # the int32 input is the model index, the float one the image
            is_model = detail["dtype"] == np.int32
            value = models if is_model else images
            interpreter.set_tensor(detail["index"], np.asarray(value, detail["dtype"]))
        interpreter.invoke()
        return np.array(interpreter.get_tensor(output))

    return run


def _onnx_stage(path: Path) -> StageFn:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()

    def run(images: np.ndarray, models: np.ndarray | None = None) -> np.ndarray:
        feeds = {
            i.name: (
                np.asarray(models, np.int32)
                if i.type == "tensor(int32)"
                else images.astype(np.float32)
            )
            for i in inputs
        }
        return np.asarray(session.run(None, feeds)[0])

    return run


def keras_stages(folder: Path) -> tuple[StageFn, StageFn]:
    """The version's Keras stages as the same kind of functions (the reference)."""
    import keras

    import training.architecture  # noqa: F401 - registers the custom layers

    stage1, stage2 = (
        keras.saving.load_model(folder / name, compile=False)
        for name in ("stage1.keras", "stage2.keras")
    )

    def first(images: np.ndarray, models: np.ndarray | None = None) -> np.ndarray:
        return np.asarray(stage1(images.astype(np.float32), training=False))

    def second(images: np.ndarray, models: np.ndarray | None = None) -> np.ndarray:
        feeds = {"image": images.astype(np.float32), "model": np.asarray(models, np.int32)}
        return np.asarray(stage2(feeds, training=False))

    return first, second


def two_stage_top1(
    stages: tuple[StageFn, StageFn], images: np.ndarray, batch: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """(model, SKU) index predicted for each image by the edge flow."""
    models, skus = [], []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch].astype(np.float32)
        model = np.argmax(stages[0](chunk), axis=1).astype(np.int32)
        skus.append(np.argmax(stages[1](chunk, model), axis=1))
        models.append(model)
    return np.concatenate(models), np.concatenate(skus)


def agreement(
    exported: tuple[StageFn, StageFn],
    reference: tuple[StageFn, StageFn],
    images: np.ndarray,
    true_skus: np.ndarray,
) -> dict[str, Any]:
    """Top-1 agreement of the exported stages with the reference, and both accuracies."""
    _, mine = two_stage_top1(exported, images)
    _, theirs = two_stage_top1(reference, images)
    return {
        "images": len(images),
        "sku_top1_agreement": float(np.mean(mine == theirs)),
        "exported_sku_top1": float(np.mean(mine == true_skus)),
        "keras_sku_top1": float(np.mean(theirs == true_skus)),
    }
