"""Cascade: a registry version's two stages loaded for inference on batches of RGB arrays."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from shared.decisions import DECISIONS
from shared.errors import InvalidArgument
from training.labels import Labels
from training.open_world import Evidence, OpenWorld
from training.ranking import RankingPolicy, propose_models, rank
from training.runners import (
    ModelFn,
    SkuFn,
    StageOutput,
    keras_runners,
    mixed_precision_models,
    onnx_runners,
)
from training.train_counts import TrainCounts

# At most this many images per forward pass: bounds activation memory (at 224 px one VGG16 pass
# over 32 images needs about a gigabyte) whatever the chunk size or the stage-2 fan-out.
MAX_PASS = 32


__all__ = ["DECISIONS", "MAX_PASS", "Cascade"]


class Cascade:
    """Stage 1 (grayscale -> model) then stage 2 (colour -> SKU within the proposed models), and
    the open-world decision on each answer (sku, model or unknown: training/open_world/)."""

    def __init__(
        self,
        model_fn: ModelFn,
        sku_fn: SkuFn,
        labels: Labels,
        *,
        version: str,
        input_size: int,
        precision: str = "fp32",
        policy: RankingPolicy | None = None,
        train_counts: TrainCounts | None = None,
        open_world: OpenWorld | None = None,
    ) -> None:
        self.labels = labels
        # the version's calibrated decision; None: every answer's decision is "sku"
        self.open_world = open_world
        # the open-world method of the last prediction: the version's, or msp where the
        # runners give no embeddings (int8 models quantized without them)
        self.decision_method = open_world.method if open_world else None
        self.train_counts = train_counts  # the training split's class sizes, when known
        self.version = version
        self.input_size = input_size
        self.precision = precision
        self.policy = policy or RankingPolicy()
        self._model_fn = model_fn
        self._sku_fn = sku_fn

    @classmethod
    def from_keras(
        cls,
        stage1: Any,
        stage2: Any,
        labels: Labels,
        *,
        version: str,
        input_size: int,
        train_counts: TrainCounts | None = None,
    ) -> Cascade:
        """A cascade of in-memory Keras models (training, evaluation)."""
        model_fn, sku_fn = keras_runners(stage1, stage2, input_size)
        return cls(
            model_fn,
            sku_fn,
            labels,
            version=version,
            input_size=input_size,
            train_counts=train_counts,
        )

    @classmethod
    def load(
        cls,
        folder: Path,
        *,
        version: str,
        precision: str = "fp32",
        policy: RankingPolicy | None = None,
        open_world: bool = True,
    ) -> Cascade:
        """Load a version folder in fp32, fp16 (mixed precision, for GPUs), bf16 (mixed
        precision, for CPUs with BF16 units) or int8 (ONNX Runtime); with its open-world
        calibration when it has one (`open_world=False`: without, as calibrating needs)."""
        config = json.loads((folder / "config.json").read_text())
        labels = Labels.load(folder / "labels.json")
        size = int(config["input_size"])
        if precision == "int8":
            model_fn, sku_fn = onnx_runners(folder)
        elif precision in ("fp16", "bf16"):
            stage1, stage2 = mixed_precision_models(folder, config, labels, precision)
            model_fn, sku_fn = keras_runners(stage1, stage2, size)
        elif precision == "fp32":
            from training.backends import load_saved  # on any Keras backend

            stage1 = load_saved(folder / "stage1.keras")
            stage2 = load_saved(folder / "stage2.keras")
            model_fn, sku_fn = keras_runners(stage1, stage2, size)
        else:
            raise InvalidArgument(f"unknown precision {precision!r}; use fp32, fp16, bf16 or int8")
        return cls(
            model_fn,
            sku_fn,
            labels,
            version=version,
            input_size=size,
            precision=precision,
            policy=policy,
            train_counts=TrainCounts.load(folder, labels),
            open_world=OpenWorld.load(folder) if open_world else None,
        )

    def model_probs(self, images: np.ndarray) -> np.ndarray:
        """Stage 1: p(model) for a batch of (N, S, S, 3) RGB images."""
        return self.stage1(images)[0]

    def sku_probs(self, images: np.ndarray, model_index: np.ndarray) -> np.ndarray:
        """Stage 2: p(SKU | model) for images paired with a model index each."""
        return self.stage2(images, model_index)[0]

    def stage1(self, images: np.ndarray) -> StageOutput:
        """Stage 1's p(model) and its `fc` embedding (None where the runner has none)."""
        return _joined(
            [
                self._model_fn(images[i : i + MAX_PASS].astype(np.float32))
                for i in range(0, len(images), MAX_PASS)
            ]
        )

    def stage2(self, images: np.ndarray, model_index: np.ndarray) -> StageOutput:
        """Stage 2's p(SKU | model) and its `sku_hidden` embedding, each image with its model."""
        return _joined(
            [
                self._sku_fn(
                    images[i : i + MAX_PASS].astype(np.float32),
                    model_index[i : i + MAX_PASS].astype(np.int32),
                )
                for i in range(0, len(images), MAX_PASS)
            ]
        )

    def warm_up(self) -> None:
        """One pass of each stage, so the first real chunk does not pay for graph set-up."""
        size = self.input_size
        self.predict(np.zeros((2, size, size, 3), dtype=np.uint8))

    def predict(self, images: np.ndarray) -> list[dict[str, Any]]:
        """Full cascade on a batch: one result dict per image (model, sku, candidates,
        decision: one of DECISIONS)."""
        return self.predict_timed(images)[0]

    def predict_timed(self, images: np.ndarray) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """`predict`, and the seconds each stage took (for metrics and benchmarks)."""
        results, _, timings = self.predict_with_evidence(images)
        return results, timings

    def predict_with_evidence(
        self, images: np.ndarray
    ) -> tuple[list[dict[str, Any]], Evidence | None, dict[str, float]]:
        """`predict_timed`, and what the open-world scores are computed from (None for no
        images). Without calibration every decision is "sku"."""
        if len(images) == 0:
            return [], None, {}
        began = time.perf_counter()
        p_model, embedding1 = self.stage1(images)
        proposals = propose_models(p_model, self.policy)
        stage1_done = time.perf_counter()
        image_rows = np.array([i for i, models in enumerate(proposals) for _ in models])
        model_rows = np.array([m for models in proposals for m in models], dtype=np.int32)
        p_sku, embedding2 = self.stage2(images[image_rows], model_rows)
        results = rank(p_model, proposals, p_sku, self.labels, self.policy)
        evidence = Evidence.of(results, p_model, embedding1, proposals, embedding2, self.labels)
        if self.open_world is None:
            decisions = ["sku"] * len(results)  # documented fallback: no calibration
        else:
            self.decision_method = self.open_world.method_for(evidence)
            decisions = self.open_world.decide(evidence)
        for result, decision in zip(results, decisions, strict=True):
            result["decision"] = decision
        timings = {"stage1": stage1_done - began, "stage2": time.perf_counter() - stage1_done}
        return results, evidence, timings


def _joined(outputs: list[StageOutput]) -> StageOutput:
    """One stage's outputs of several passes as one (an embedding only if every pass had one)."""
    probs = np.concatenate([p for p, _ in outputs])
    embeddings = [e for _, e in outputs]
    if any(e is None for e in embeddings):
        return probs, None
    return probs, np.concatenate([e for e in embeddings if e is not None])
