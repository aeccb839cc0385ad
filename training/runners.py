"""Stage runners: the two cascade stages as plain functions of NumPy arrays, either Keras models
(compiled once with a fixed signature; float32, or mixed float16/bfloat16 compute) or ONNX Runtime
sessions of the int8 models.

Each runner returns the stage's probabilities and its penultimate embedding (stage 1's `fc`,
stage 2's `sku_hidden`), which the open-world decision compares with the training photos'
(training/open_world/). The embedding is None where a runner cannot give it: int8 models
quantized before the embeddings were exported."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# (probabilities, penultimate embedding or None)
StageOutput = tuple[np.ndarray, np.ndarray | None]
ModelFn = Callable[[np.ndarray], StageOutput]
SkuFn = Callable[[np.ndarray, np.ndarray], StageOutput]
ProbsFn = Callable[[np.ndarray], np.ndarray]
INT8_FILES = ("stage1.int8.onnx", "stage2.int8.onnx")
# The penultimate layer of each stage (training/architecture.py): its output is the embedding.
EMBEDDING_LAYERS = ("fc", "sku_hidden")


def with_embedding(model: Any, layer: str) -> Any:
    """`model` with a second output, the named layer's: same weights, nothing recomputed."""
    import keras

    return keras.Model(model.input, [model.output, model.get_layer(layer).output])


def keras_runners(stage1: Any, stage2: Any, input_size: int) -> tuple[ModelFn, SkuFn]:
    """The two stages as functions of NumPy arrays, compiled once on any Keras backend."""
    first = with_embedding(stage1, EMBEDDING_LAYERS[0])
    second = with_embedding(stage2, EMBEDDING_LAYERS[1])
    run_first, run_second = _compiled_stages(first, second, input_size)

    def model_fn(x: np.ndarray) -> StageOutput:
        probs, embedding = run_first(x)
        return np.asarray(probs), np.asarray(embedding, dtype=np.float32)

    def sku_fn(x: np.ndarray, m: np.ndarray) -> StageOutput:
        probs, embedding = run_second(x, m)
        return np.asarray(probs), np.asarray(embedding, dtype=np.float32)

    return model_fn, sku_fn


def keras_runner(model: Any, input_size: int) -> ProbsFn:
    """A Keras model of one image input, compiled once (probabilities only: the flat
    comparison model)."""
    from training.backends import backend

    if backend() != "tensorflow":
        from training.backends import predictor

        run_any = predictor(model)
        return lambda x: np.asarray(run_any(x))
    import tensorflow as tf

    spec = tf.TensorSpec([None, input_size, input_size, 3], tf.float32)
    run = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return lambda x: np.asarray(run(x))


def _compiled_stages(first: Any, second: Any, input_size: int) -> tuple[Any, Any]:
    """TensorFlow: tf.functions that are never retraced for a new batch size. JAX and PyTorch:
    training/backends.py (TensorFlow is then never imported)."""
    from training.backends import backend

    if backend() != "tensorflow":
        from training.backends import predictor

        run_first_any, run_second_any = predictor(first), predictor(second)
        return run_first_any, lambda x, m: run_second_any({"image": x, "model": m})
    import tensorflow as tf

    spec = tf.TensorSpec([None, input_size, input_size, 3], tf.float32)
    run_first = tf.function(lambda x: first(x, training=False), input_signature=[spec])
    run_second = tf.function(
        lambda x, m: second({"image": x, "model": m}, training=False),
        input_signature=[spec, tf.TensorSpec([None], tf.int32)],
    )
    return run_first, run_second


def mixed_precision_models(
    folder: Path, config: dict[str, Any], labels: Any, precision: str
) -> tuple[Any, Any]:
    """The version's two stages rebuilt by the shared builder with 16-bit compute and float32
    weights and outputs (Keras mixed precision): fp16 for GPUs with tensor cores, bf16 for CPUs
    with AVX-512 BF16 / AMX, where oneDNN runs the convolutions in bfloat16."""

    from training.architecture import build_stage1, build_stage2
    from training.backends import load_saved
    from training.mixed_precision import policy

    shape: dict[str, Any] = {
        "input_size": int(config["input_size"]),
        "width": float(config["width"]),
        "batch_norm": bool(config.get("batch_norm", False)),
    }
    saved = [load_saved(folder / name) for name in ("stage1.keras", "stage2.keras")]
    with policy(precision):
        rebuilt = [
            build_stage1(len(labels.models), **shape),
            build_stage2(labels.membership, len(labels.skus), **shape),
        ]
    for model, weights in zip(rebuilt, saved, strict=True):
        model.set_weights(weights.get_weights())
    return rebuilt[0], rebuilt[1]


def onnx_runners(folder: Path, threads: int = 0) -> tuple[ModelFn, SkuFn]:
    """The int8 ONNX models of a version folder in ONNX Runtime (VNNI on x86 CPUs). Models
    quantized with their embeddings (training/quantize.py) have them as a second output."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = [
        ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])
        for name in INT8_FILES
    ]
    first, second = sessions
    first_input = first.get_inputs()[0].name
    second_inputs = {i.name for i in second.get_inputs()}
    image_name = next(n for n in second_inputs if "image" in n)
    model_name = next(n for n in second_inputs if n != image_name)

    def outputs(found: list[Any]) -> StageOutput:
        embedding = np.asarray(found[1], dtype=np.float32) if len(found) > 1 else None
        return np.asarray(found[0]), embedding

    def model_fn(x: np.ndarray) -> StageOutput:
        return outputs(first.run(None, {first_input: x}))

    def sku_fn(x: np.ndarray, m: np.ndarray) -> StageOutput:
        return outputs(second.run(None, {image_name: x, model_name: m}))

    return model_fn, sku_fn
