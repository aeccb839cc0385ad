"""Cascade: a registry version's two stages loaded for inference on batches of RGB arrays."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from training.labels import Labels
from training.ranking import RankingPolicy, propose_models, rank


class Cascade:
    """Stage 1 (grayscale -> model) then stage 2 (colour -> SKU within the proposed models)."""

    def __init__(
        self,
        stage1: Any,
        stage2: Any,
        labels: Labels,
        *,
        version: str,
        input_size: int,
        policy: RankingPolicy | None = None,
    ) -> None:
        import tensorflow as tf

        self.labels = labels
        self.version = version
        self.input_size = input_size
        self.policy = policy or RankingPolicy()
        spec = tf.TensorSpec([None, input_size, input_size, 3], tf.float32)
        # Fixed signatures: one graph per stage, never retraced for a new batch size.
        self._stage1 = tf.function(lambda x: stage1(x, training=False), input_signature=[spec])
        self._stage2 = tf.function(
            lambda x, m: stage2({"image": x, "model": m}, training=False),
            input_signature=[spec, tf.TensorSpec([None], tf.int32)],
        )

    @classmethod
    def load(cls, folder: Path, *, version: str, policy: RankingPolicy | None = None) -> Cascade:
        """Load `stage1.keras`, `stage2.keras` and `labels.json` from a version folder."""
        import keras

        import training.architecture  # noqa: F401 - registers the custom layers for loading

        config = json.loads((folder / "config.json").read_text())
        stage1 = keras.saving.load_model(folder / "stage1.keras", compile=False)
        stage2 = keras.saving.load_model(folder / "stage2.keras", compile=False)
        labels = Labels.load(folder / "labels.json")
        return cls(
            stage1,
            stage2,
            labels,
            version=version,
            input_size=int(config["input_size"]),
            policy=policy,
        )

    def model_probs(self, images: np.ndarray) -> np.ndarray:
        """Stage 1: p(model) for a batch of (N, S, S, 3) RGB images."""
        return np.asarray(self._stage1(images.astype(np.float32, copy=False)))

    def sku_probs(self, images: np.ndarray, model_index: np.ndarray) -> np.ndarray:
        """Stage 2: p(SKU | model) for images paired with a model index each."""
        return np.asarray(
            self._stage2(images.astype(np.float32, copy=False), model_index.astype(np.int32))
        )

    def predict(self, images: np.ndarray) -> list[dict[str, Any]]:
        """Full cascade on a batch: one result dict per image (model, sku, candidates)."""
        return self.predict_timed(images)[0]

    def predict_timed(self, images: np.ndarray) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """`predict`, and the seconds each stage took (for metrics and benchmarks)."""
        if len(images) == 0:
            return [], {}
        began = time.perf_counter()
        p_model = self.model_probs(images)
        proposals = propose_models(p_model, self.policy)
        stage1_done = time.perf_counter()
        image_rows = np.array([i for i, models in enumerate(proposals) for _ in models])
        model_rows = np.array([m for models in proposals for m in models], dtype=np.int32)
        p_sku = self.sku_probs(images[image_rows], model_rows)
        results = rank(p_model, proposals, p_sku, self.labels, self.policy)
        timings = {"stage1": stage1_done - began, "stage2": time.perf_counter() - stage1_done}
        return results, timings
