"""Evaluation of a trained cascade on the held-out test split: accuracies, per-class precision and
recall, calibration, and a confusion matrix."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from training.cascade import DECISIONS, Cascade
from training.loading import ArraySet
from training.train_counts import TrainCounts

CALIBRATION_BINS = 15


def evaluate(cascade: Cascade, test: ArraySet, *, batch_size: int = 64) -> dict[str, Any]:
    """Stage-1, stage-2 and end-to-end metrics of `cascade` on `test`."""
    labels = cascade.labels
    n = len(test.skus)
    if n == 0:
        return {"test_images": 0}
    p_model = _batched(cascade.model_probs, test.images, batch_size)
    p_sku_true_model = _batched2(cascade.sku_probs, test.images, test.models, batch_size)
    clock = time.perf_counter()
    results = [
        r
        for start in range(0, n, batch_size)
        for r in cascade.predict(test.images[start : start + batch_size])
    ]
    predict_seconds = time.perf_counter() - clock
    predicted_sku = np.array([labels.sku_index[r["sku"]["label"]] for r in results])
    predicted_model = np.argmax(p_model, axis=1)
    reported_model = np.array([labels.model_index[r["model"]["label"]] for r in results])
    top5 = [[labels.sku_index[c["sku"]] for c in r["candidates"]] for r in results]
    confidence = np.array([r["sku"]["confidence"] for r in results])
    n_models, n_skus = len(labels.models), len(labels.skus)
    return {
        "test_images": n,
        "stage1": {
            "top1": _top_k(p_model, test.models, 1),
            "top5": _top_k(p_model, test.models, 5),
            "balanced_accuracy": balanced_accuracy(test.models, predicted_model, n_models),
            "per_class": _per_class(test.models, predicted_model, labels.models),
        },
        "stage2_given_true_model": {"top1": _top_k(p_sku_true_model, test.skus, 1)},
        "majority_baseline": majority_baselines(test, cascade.train_counts),
        "end_to_end": {
            "model_top1": float(np.mean(reported_model == test.models)),
            "model_balanced_accuracy": balanced_accuracy(test.models, reported_model, n_models),
            "sku_top1": float(np.mean(predicted_sku == test.skus)),
            "sku_balanced_accuracy": balanced_accuracy(test.skus, predicted_sku, n_skus),
            "sku_top5": float(np.mean([t in row for t, row in zip(test.skus, top5, strict=True)])),
            "predict_images_per_second": round(n / predict_seconds, 1),
            "expected_calibration_error": expected_calibration_error(
                confidence, predicted_sku == test.skus
            ),
            "per_sku": _per_class(test.skus, predicted_sku, labels.skus),
            **_error_kinds(predicted_sku, test, labels),
        },
        "model_confusion": confusion(test.models, predicted_model, len(labels.models)).tolist(),
        **_open_world(cascade, results, predicted_sku == test.skus),
    }


def _open_world(
    cascade: Cascade, results: list[dict[str, Any]], correct: np.ndarray
) -> dict[str, Any]:
    """For a calibrated cascade: its operating point, the decisions' counts, and the share of
    correctly classified photos that lost their "sku" decision."""
    world = cascade.open_world
    if world is None:
        return {}
    decisions = np.array([r["decision"] for r in results])
    lost = decisions[correct] != "sku"
    return {
        "open_world": {
            "method": cascade.decision_method,
            "budget": world.budget,
            "split": world.split,
            "thresholds": world.thresholds[cascade.decision_method or world.method],
            "known_sku_lost": float(lost.mean()) if len(lost) else None,
            "known_correct_photos": len(lost),
            "decisions": {d: int(np.sum(decisions == d)) for d in DECISIONS},
        }
    }


def evaluate_flat(
    model: Any, test: ArraySet, labels: Any, *, width: float, batch_size: int = 64
) -> dict[str, Any]:
    """The flat single-stage SKU classifier on the same test split, with the cascade's measures."""
    n = len(test.skus)
    if n == 0:
        return {"test_images": 0}
    from training.runners import keras_runner

    run = keras_runner(model, test.images.shape[1])
    predict = lambda x: run(x.astype(np.float32))  # noqa: E731
    predict(test.images[:2])  # compiled and warm, as the cascade's runners are
    clock = time.perf_counter()
    probs = _batched(predict, test.images, batch_size)
    seconds = time.perf_counter() - clock
    predicted = np.argmax(probs, axis=1)
    return {
        "test_images": n,
        "width": width,
        "parameters": int(model.count_params()),
        "predict_images_per_second": round(n / seconds, 1),
        "model_top1": float(np.mean(np.array(labels.model_of_sku)[predicted] == test.models)),
        "sku_top1": float(np.mean(predicted == test.skus)),
        "sku_balanced_accuracy": balanced_accuracy(test.skus, predicted, len(labels.skus)),
        "sku_top5": _top_k(probs, test.skus, 5),
        "expected_calibration_error": expected_calibration_error(
            probs.max(axis=1), predicted == test.skus
        ),
        **_error_kinds(predicted, test, labels),
    }


def _error_kinds(predicted_sku: np.ndarray, test: ArraySet, labels: Any) -> dict[str, Any]:
    """Where mistakes come from: the wrong model, or the right model but the wrong colourway;
    and SKU top-1 per true model."""
    predicted_model = np.array(labels.model_of_sku)[predicted_sku]
    wrong = predicted_sku != test.skus
    return {
        "errors": {
            "wrong_model": int(np.sum(wrong & (predicted_model != test.models))),
            "wrong_sku_right_model": int(np.sum(wrong & (predicted_model == test.models))),
        },
        "sku_top1_by_model": {
            name: float(np.mean(~wrong[test.models == m]))
            for m, name in enumerate(labels.models)
            if np.any(test.models == m)
        },
    }


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray, k: int) -> float:
    """Mean recall over the classes present in `truth`: every class counts the same, however
    many images it has (top-1 is dominated by the large classes)."""
    recalls = [np.mean(predicted[truth == c] == c) for c in range(k) if np.any(truth == c)]
    return float(np.mean(recalls)) if recalls else 0.0


def majority_baseline(train_counts: np.ndarray, truth: np.ndarray) -> float:
    """Top-1 of always answering the class with the most training images."""
    return float(np.mean(truth == int(np.argmax(train_counts)))) if len(truth) else 0.0


def majority_baselines(test: ArraySet, train_counts: TrainCounts | None) -> dict[str, Any]:
    """The majority baseline of models and SKUs; from the training split's counts when the
    version has them, else (an older version) from the test images' own counts."""
    if train_counts is None:
        models = np.bincount(test.models, minlength=1)
        skus = np.bincount(test.skus, minlength=1)
        source = "test split"
    else:
        models, skus, source = train_counts.models, train_counts.skus, "training split"
    return {
        "model_top1": majority_baseline(models, test.models),
        "sku_top1": majority_baseline(skus, test.skus),
        "largest_classes_from": source,
    }


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray) -> float:
    """ECE over equal-width confidence bins: how far confidence is from accuracy, on average."""
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1]), 0, CALIBRATION_BINS - 1)
    total = 0.0
    for b in range(CALIBRATION_BINS):
        in_bin = bins == b
        if in_bin.any():
            total += in_bin.mean() * abs(confidence[in_bin].mean() - correct[in_bin].mean())
    return float(total)


def confusion(truth: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """k x k counts: rows are the truth, columns the prediction."""
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def _per_class(truth: np.ndarray, predicted: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for i, name in enumerate(names):
        tp = int(np.sum((predicted == i) & (truth == i)))
        predicted_i = int(np.sum(predicted == i))
        actual_i = int(np.sum(truth == i))
        out[name] = {
            "precision": tp / predicted_i if predicted_i else None,
            "recall": tp / actual_i if actual_i else None,
            "support": actual_i,
        }
    return out


def _top_k(probs: np.ndarray, truth: np.ndarray, k: int) -> float:
    top = np.argsort(-probs, axis=1)[:, : min(k, probs.shape[1])]
    return float(np.mean([t in row for t, row in zip(truth, top, strict=True)]))


def _batched(fn: Any, images: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([fn(images[i : i + size]) for i in range(0, len(images), size)])


def _batched2(fn: Any, images: np.ndarray, models: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate(
        [fn(images[i : i + size], models[i : i + size]) for i in range(0, len(images), size)]
    )


def summary_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline numbers as (name, value) rows for reports and the CLI."""
    if not metrics.get("test_images"):
        return [("test images", "0")]
    return [
        ("test images", str(metrics["test_images"])),
        ("stage 1 model top-1", f"{metrics['stage1']['top1']:.2%}"),
        ("stage 1 model top-5", f"{metrics['stage1']['top5']:.2%}"),
        ("stage 2 SKU top-1 (true model)", f"{metrics['stage2_given_true_model']['top1']:.2%}"),
        *_balanced_row("stage 1 model balanced accuracy", metrics["stage1"]),
        ("end-to-end model top-1", f"{metrics['end_to_end']['model_top1']:.2%}"),
        *_balanced_row("end-to-end model balanced accuracy", metrics["end_to_end"], "model_"),
        *_majority_row("majority-class baseline, model", metrics, "model_top1"),
        ("end-to-end SKU top-1", f"{metrics['end_to_end']['sku_top1']:.2%}"),
        *_balanced_row("end-to-end SKU balanced accuracy", metrics["end_to_end"], "sku_"),
        *_majority_row("majority-class baseline, SKU", metrics, "sku_top1"),
        ("end-to-end SKU top-5", f"{metrics['end_to_end']['sku_top5']:.2%}"),
        (
            "expected calibration error",
            f"{metrics['end_to_end']['expected_calibration_error']:.4f}",
        ),
    ]


def _balanced_row(name: str, part: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    # Versions written before balanced accuracy was measured lack it: no row rather than a 0.
    value = part.get(f"{prefix}balanced_accuracy")
    return [] if value is None else [(name, f"{value:.2%}")]


def _majority_row(name: str, metrics: dict[str, Any], key: str) -> list[tuple[str, str]]:
    baseline = metrics.get("majority_baseline")
    return [] if baseline is None else [(name, f"{baseline[key]:.2%}")]
