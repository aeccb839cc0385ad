"""int8 versions of a model version's two stages: export to ONNX, then static quantization with
calibration images (per-channel int8 weights, uint8 activations) for ONNX Runtime. Each stage is
exported with its penultimate embedding as a second output, which the open-world decision needs
(training/runners.py, training/open_world/)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from training.runners import EMBEDDING_LAYERS, INT8_FILES, with_embedding


def export_onnx(model: Any, path: Path, sample: dict[str, np.ndarray] | np.ndarray) -> None:
    """Write a Keras model as ONNX (it must have been called once to be exportable)."""
    model(sample, training=False)
    model.export(str(path), format="onnx", verbose=False)


def quantize_version(folder: Path, calibration: np.ndarray, models: np.ndarray) -> list[Path]:
    """Write `stage1.int8.onnx` and `stage2.int8.onnx` next to the Keras models."""
    import keras

    import training.architecture  # noqa: F401 - registers the custom layers

    images = calibration.astype(np.float32)
    stages: list[tuple[Path, Any, dict[str, np.ndarray]]] = [
        (folder / "stage1.keras", images, {"image": images}),
        (
            folder / "stage2.keras",
            {"image": images, "model": models.astype(np.int32)},
            {"image": images, "model": models.astype(np.int32)},
        ),
    ]
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        for (keras_file, sample, feeds), name, layer in zip(
            stages, INT8_FILES, EMBEDDING_LAYERS, strict=True
        ):
            model = with_embedding(keras.saving.load_model(keras_file, compile=False), layer)
            plain = Path(scratch) / f"{keras_file.stem}.onnx"
            export_onnx(model, plain, sample)
            quantize_onnx(plain, folder / name, feeds, scratch=Path(scratch))
            written.append(folder / name)
    return written


def quantize_onnx(plain: Path, out: Path, feeds: dict[str, np.ndarray], *, scratch: Path) -> None:
    """Static int8 quantization of a float ONNX model, calibrated on `feeds` (also used by the
    edge export, training/edge_export.py)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = scratch / f"{plain.stem}.prep.onnx"
    quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(out),
        _Calibration(str(prepared), feeds),
        quant_format=QuantFormat.QDQ,
        # Only the heavy ops: the -1e9 mask and softmax of stage 2 must stay float.
        op_types_to_quantize=["Conv", "MatMul", "Gemm"],
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


class _Calibration:
    """Feeds calibration images one at a time, under the ONNX model's own input names."""

    def __init__(self, onnx_path: str, feeds: dict[str, np.ndarray]) -> None:
        import onnxruntime as ort

        names = [i.name for i in ort.InferenceSession(onnx_path).get_inputs()]
        mapping = {
            n: next(k for k in feeds if k in n) if len(feeds) > 1 else next(iter(feeds))
            for n in names
        }
        count = len(next(iter(feeds.values())))
        self._items = iter(
            [{n: feeds[k][i : i + 1] for n, k in mapping.items()} for i in range(count)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)
