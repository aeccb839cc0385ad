"""A version's stages rebuilt for a new label space, their weights copied by label.

SKU indices run model by model (training.labels), so one new SKU shifts the global index of
every SKU after it, and a new model shifts the model indices: weights are therefore copied by
name, never by position. Per-model rows (FiLM scale and shift, the model embedding) and per-class
columns (stage 1's softmax, stage 2's `sku_logits`) of labels both versions have are copied
unchanged; a new model's rows start at the mean of the known rows, and new columns at zero, for
training.head_fit to fit."""

from __future__ import annotations

from typing import Any

import numpy as np

from training.architecture import FILM_BLOCKS, build_stage1, build_stage2
from training.labels import Labels

MODEL_ROWS = (
    "model_embedding",
    *(f"block{b}_film_{part}" for b in FILM_BLOCKS for part in ("scale", "shift")),
)
STAGE1_OUTPUT = "model"  # stage 1's softmax Dense
SKU_LOGITS = "sku_logits"


def relabel_stage1(old: Any, old_labels: Labels, new_labels: Labels, shape: dict[str, Any]) -> Any:
    """Stage 1 for `new_labels`' models: the trunk and head as they were, the softmax's columns
    of known models copied (new models' columns are zero)."""
    new = build_stage1(len(new_labels.models), **shape)
    _copy(old, new, {STAGE1_OUTPUT: _columns(old_labels.models, new_labels.models)})
    return new


def relabel_stage2(old: Any, old_labels: Labels, new_labels: Labels, shape: dict[str, Any]) -> Any:
    """Stage 2 for `new_labels`: per-model rows by model, `sku_logits` columns by SKU."""
    new = build_stage2(new_labels.membership, len(new_labels.skus), **shape)
    rows = _rows(old_labels.models, new_labels.models)
    _copy(
        old,
        new,
        {SKU_LOGITS: _columns(old_labels.skus, new_labels.skus), **dict.fromkeys(MODEL_ROWS, rows)},
    )
    return new


def _copy(old: Any, new: Any, remap: dict[str, Any]) -> None:
    """Every weighted layer of `new` from the same-named layer of `old`, through `remap`'s
    function where one is given."""
    for layer in new.layers:
        if not layer.weights:
            continue
        weights = old.get_layer(layer.name).get_weights()
        move = remap.get(layer.name)
        layer.set_weights(move(weights) if move else weights)


def _columns(old: tuple[str, ...], new: tuple[str, ...]) -> Any:
    """Dense weights (kernel, bias) with a column per label: known labels' columns copied."""
    where = {label: i for i, label in enumerate(old)}
    pairs = [(j, where[label]) for j, label in enumerate(new) if label in where]

    def move(weights: list[np.ndarray]) -> list[np.ndarray]:
        kernel, bias = weights
        new_kernel = np.zeros((kernel.shape[0], len(new)), kernel.dtype)
        new_bias = np.zeros(len(new), bias.dtype)
        for j, i in pairs:
            new_kernel[:, j], new_bias[j] = kernel[:, i], bias[i]
        return [new_kernel, new_bias]

    return move


def _rows(old: tuple[str, ...], new: tuple[str, ...]) -> Any:
    """Embedding tables with a row per model: known rows copied, new rows the known mean."""
    where = {label: i for i, label in enumerate(old)}

    def move(weights: list[np.ndarray]) -> list[np.ndarray]:
        (table,) = weights
        mean = table.mean(axis=0)
        return [np.stack([table[where[m]] if m in where else mean for m in new])]

    return move


def new_label_indices(old: tuple[str, ...], new: tuple[str, ...]) -> list[int]:
    """Indices (in `new`) of the labels `old` lacks."""
    known = set(old)
    return [j for j, label in enumerate(new) if label not in known]
