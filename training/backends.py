"""Serving on any Keras 3 backend: which one runs (KERAS_BACKEND; TensorFlow by default), and a
model compiled for inference on JAX or PyTorch without importing TensorFlow. Training stays
TensorFlow-only (tf.data pipelines); the saved models hold only `keras.ops` layers, so a version
trained under TensorFlow loads and predicts under the other backends."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

# JAX compiles once per input shape: batches are padded up to one of these sizes (then to a
# multiple of the last), so a worker compiles a handful of programs instead of one per chunk size.
PAD_SIZES = (1, 2, 4, 8, 16, 32)

Predictor = Callable[[Any], Any]


@keras.saving.register_keras_serializable(package="skuai")
class NoInitialValues(keras.initializers.Initializer):
    """Zeros made by NumPy (nothing to compile) for weights that are loaded right after."""

    def __call__(self, shape: Any, dtype: Any = None) -> np.ndarray:
        return np.zeros(shape, dtype=keras.backend.standardize_dtype(dtype or "float32"))

    def get_config(self) -> dict[str, Any]:
        return {}


def backend() -> str:
    """The Keras backend of this process: tensorflow, jax or torch."""
    return str(keras.backend.backend())


def predictor(model: Any) -> Predictor:
    """`model` in inference mode as a function of NumPy arrays (or a dict of them) returning
    NumPy arrays (a list for several outputs), for the JAX and PyTorch backends."""
    name = backend()
    if name == "jax":
        return _jax_predictor(model)
    if name == "torch":
        return _torch_predictor(model)
    return lambda inputs: _to_numpy(model(inputs, training=False))


def load_saved(path: Path) -> Any:
    """A saved `.keras` model for inference. Under JAX the layers are built without drawing
    their random initial weights, which the saved ones replace at once: JAX would otherwise
    compile a random generator for every weight shape (a minute on a busy 2-core CPU)."""
    import training.architecture  # noqa: F401 - registers the custom layers

    if backend() != "jax":
        return keras.saving.load_model(path, compile=False)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    model = keras.saving.deserialize_keras_object(_without_initializers(config))
    model.load_weights(path)
    return model


def _without_initializers(config: Any) -> Any:
    """`config` with every initializer replaced by NoInitialValues."""
    if isinstance(config, list):
        return [_without_initializers(item) for item in config]
    if not isinstance(config, dict):
        return config
    if config.get("module") == "keras.initializers":
        return {
            "module": None,
            "class_name": "NoInitialValues",
            "config": {},
            "registered_name": keras.saving.get_registered_name(NoInitialValues),
        }
    return {key: _without_initializers(value) for key, value in config.items()}


def padded_size(rows: int) -> int:
    """The batch size `rows` images are padded to for JAX."""
    for size in PAD_SIZES:
        if rows <= size:
            return size
    step = PAD_SIZES[-1]
    return -(-rows // step) * step


def _jax_predictor(model: Any) -> Predictor:
    """One jitted stateless call, the weights passed as arguments (not baked in as constants)."""
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    @jax.jit
    def run(trainable: Any, non_trainable: Any, inputs: Any) -> Any:
        outputs, _ = model.stateless_call(trainable, non_trainable, inputs, training=False)
        return outputs

    def predict(inputs: Any) -> Any:
        rows = _rows(inputs)
        padded = _pad(inputs, padded_size(rows))
        return _sliced(_to_numpy(run(trainable, non_trainable, padded)), rows)

    return predict


def _torch_predictor(model: Any) -> Predictor:
    """Eager PyTorch without autograd (Keras places the inputs on the GPU where there is one)."""
    import torch

    def predict(inputs: Any) -> Any:
        with torch.no_grad():
            return _to_numpy(model(inputs, training=False))

    return predict


def _rows(inputs: Any) -> int:
    first = next(iter(inputs.values())) if isinstance(inputs, dict) else inputs
    return int(first.shape[0])


def _pad(inputs: Any, rows: int) -> Any:
    """Zero rows appended up to `rows` (model index 0 is a valid index for stage 2)."""
    if isinstance(inputs, dict):
        return {name: _pad(value, rows) for name, value in inputs.items()}
    array = np.asarray(inputs)
    missing = rows - array.shape[0]
    if missing <= 0:
        return array
    return np.concatenate([array, np.zeros((missing, *array.shape[1:]), dtype=array.dtype)])


def _sliced(outputs: Any, rows: int) -> Any:
    if isinstance(outputs, list):
        return [output[:rows] for output in outputs]
    return outputs[:rows]


def _to_numpy(outputs: Any) -> Any:
    from keras import ops

    if isinstance(outputs, list | tuple):
        return [np.asarray(ops.convert_to_numpy(output)) for output in outputs]
    return np.asarray(ops.convert_to_numpy(outputs))
