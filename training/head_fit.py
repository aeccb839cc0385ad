"""Fitting the last layers on cached features, the trunk untouched: how an incremental version
learns new SKUs in seconds instead of retraining a stage. `fit_columns`: stage 2's `sku_logits`
columns of new SKUs on `sku_hidden` features; `fit_head`: stage 1's head (`fc` and the softmax)
on trunk (`gap`) features, so new colourways and new models are routed to their model.

Columns that must not move (the known SKUs of a model that gained one) enter as fixed logits,
so the known SKUs keep their decision boundaries between each other and only lose photos to the
new class; the other columns are fitted from their starting values. The fit is multinomial
logistic regression by L-BFGS (SciPy) on the whole feature matrix: deterministic, and a few
hundred iterations take well under a second on a few thousand photos, where Keras' fit spent
most of its time in per-epoch overhead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

L2 = 1e-3  # weight decay on the fitted kernel, per photo (keeps the new logits' scale sane)
MAX_ITERATIONS = 500
SCALE_FLOOR = 1e-6  # added to each feature's spread (a dead unit stays 0, not nan)


@dataclass(frozen=True)
class Columns:
    """A softmax layer's kernel (features x classes) and bias for some classes."""

    kernel: np.ndarray
    bias: np.ndarray


def fit_columns(
    features: np.ndarray,
    targets: np.ndarray,
    start: Columns,
    *,
    fixed: Columns | None = None,
    l2: float = L2,
) -> Columns:
    """Fit `start`'s columns so softmax([fixed logits, fitted logits]) predicts `targets`
    (class indices in that order: the fixed classes first). Classes weigh the same whatever
    their photo counts (a new SKU has fewer photos than the known ones)."""
    # Standardised features: the fit (and its L2) do not depend on the features' scale, which
    # is tiny in a briefly trained trunk; the scaling is folded back into the kernel below.
    mean, scale = features.mean(axis=0), features.std(axis=0) + SCALE_FLOOR
    x = (features.astype(np.float64) - mean) / scale
    n, d = x.shape
    free = start.kernel.shape[1]
    known = np.zeros((n, 0)) if fixed is None else features @ fixed.kernel + fixed.bias
    classes = known.shape[1] + free
    counts = np.bincount(targets, minlength=classes).astype(np.float64)
    weights = (1.0 / (np.count_nonzero(counts) * np.maximum(counts, 1)))[targets]
    onehot = np.zeros((n, classes))
    onehot[np.arange(n), targets] = 1.0

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        kernel, bias = theta[: d * free].reshape(d, free), theta[d * free :]
        logits = np.concatenate([known, x @ kernel + bias], axis=1)
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        value = -np.sum(weights * log_p[np.arange(n), targets]) + 0.5 * l2 * np.sum(kernel**2)
        residual = (np.exp(log_p) - onehot)[:, known.shape[1] :] * weights[:, None]
        grad_kernel = x.T @ residual + l2 * kernel
        return float(value), np.concatenate([grad_kernel.ravel(), residual.sum(axis=0)])

    # the starting columns in standardised terms: w' = w * scale, b' = b + mean @ w
    kernel0 = start.kernel.astype(np.float64) * scale[:, None]
    bias0 = start.bias.astype(np.float64) + mean @ start.kernel
    theta = np.concatenate([kernel0.ravel(), bias0])
    found = minimize(
        loss, theta, jac=True, method="L-BFGS-B", options={"maxiter": MAX_ITERATIONS}
    ).x
    kernel = found[: d * free].reshape(d, free) / scale[:, None]
    bias = found[d * free :] - mean @ kernel
    return Columns(kernel=kernel.astype(start.kernel.dtype), bias=bias.astype(start.bias.dtype))


HEAD_EPOCHS = 30
HEAD_LEARNING_RATE = 1e-3
HEAD_BATCH = 64


def fit_head(
    stage1: Any, features: np.ndarray, targets: np.ndarray, classes: int, *, seed: int
) -> None:
    """Fine-tune stage 1's head (`fc`, dropout, the `model` softmax) in place on cached `gap`
    features, from its current weights; models weigh the same whatever their photo counts."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    fc, out = stage1.get_layer("fc"), stage1.get_layer("model")
    x = keras.Input((features.shape[1],))
    hidden = layers.Dense(fc.units, activation="relu")
    softmax = layers.Dense(classes, activation="softmax")
    y = softmax(layers.Dropout(stage1.get_layer("dropout").rate)(hidden(x)))
    head = keras.Model(x, y)
    # trained on standardised features (as fit_columns, so a briefly trained trunk's tiny
    # features train as well as large ones), folded back into `fc` after: W x + b on the raw
    # features is (W * scale) x' + (b + W mean) on the standardised x'
    mean, scale = features.mean(axis=0), features.std(axis=0) + SCALE_FLOOR
    kernel, bias = fc.get_weights()
    hidden.set_weights([kernel * scale[:, None], bias + mean @ kernel])
    softmax.set_weights(out.get_weights())
    features = (features - mean) / scale
    counts = np.bincount(targets, minlength=classes).astype(np.float64)
    weights = (len(targets) / (np.count_nonzero(counts) * np.maximum(counts, 1)))[targets]
    head.compile(
        optimizer=keras.optimizers.Adam(HEAD_LEARNING_RATE), loss="sparse_categorical_crossentropy"
    )
    head.fit(
        features.astype(np.float32),
        targets,
        sample_weight=weights.astype(np.float32),
        epochs=HEAD_EPOCHS,
        batch_size=HEAD_BATCH,
        shuffle=True,
        verbose=0,
    )
    kernel, bias = hidden.get_weights()
    kernel = kernel / scale[:, None]
    fc.set_weights([kernel.astype(np.float32), (bias - mean @ kernel).astype(np.float32)])
    out.set_weights(softmax.get_weights())
