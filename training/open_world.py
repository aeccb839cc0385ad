"""The open-world decision (issue 18): is an answer a catalog SKU ("sku"), a known model in a
colourway the catalog may not have ("model"), or not a catalog model at all ("unknown")?

Two scores per answer, higher meaning "more like what the version was trained on":

- the *unknown* score (stage 1: is this a catalog model?),
- the *model* score (stage 2: is this a known colourway of the answered model?).

"unknown" when the first is below its threshold, else "model" when the second is below its
threshold, else "sku". The scores are pluggable (METHODS); the evidence of
docs/experiments/open_world.md chose the default, "energy+cos": stage 1's energy (logsumexp of
its logits) and its `fc` embedding's cosine to the nearest model centroid, each z-scored on the
validation photos and averaged; stage 2's `sku_hidden` embedding's cosine to the nearest SKU
centroid among the answered model's SKUs. "msp" (stage 1's maximum probability, the answer's
joint probability) needs no embeddings, so it is also the fallback where a runner gives none
(int8 models quantized without them). The kNN methods ("knn1".."knn5") replace stage 2's
centroid by the k-th nearest training embedding of the answered model's SKUs.

Thresholds are fitted per version on its validation photos: of the correctly classified ones, at
most `budget` (default 5%) may lose their "sku" decision; stage 1's threshold spends `split` of
it (default half), stage 2's the rest of it on the photos stage 1 kept. The version keeps the
fit in `open_world.json` (method, budget, thresholds of every method, z-score statistics) and
`open_world.npz` (centroids, kNN bank, stage 1's last layer). training/open_world_measure.py
measures the decision on photos. No TensorFlow at import: the functions that run a cascade
import it when called."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.errors import ConfigError, DatasetError, InvalidArgument
from training.dataset import Sample
from training.labels import Labels

if TYPE_CHECKING:
    from training.cascade import Cascade

DECISIONS = ("sku", "model", "unknown")
CALIBRATION_FILE = "open_world.json"
BANK_FILE = "open_world.npz"
DEFAULT_METHOD = "energy+cos"
FALLBACK_METHOD = "msp"  # needs no embeddings
DEFAULT_BUDGET = 0.05
DEFAULT_SPLIT = 0.5
CENTROID_PHOTOS = 16  # training photos per SKU behind the centroids (cost: seed scale has 504 SKUs)
BANK_PHOTOS = 16  # of those, kept per SKU for the kNN methods
MAX_K = 5
CHUNK = 256  # photos decoded and scored at a time (bounds memory at seed scale)
# The targets: at most 5% of correct known photos lose "sku"; at least 90% of unknown
# colourways are flagged ("model" or "unknown"); at least 95% of unknown models are "unknown".
TARGETS = {
    "known_sku_lost": ("<=", 0.05),
    "unknown_colourways_flagged": (">=", 0.90),
    "unknown_models_unknown": (">=", 0.95),
}


@dataclass(frozen=True)
class Method:
    """The stage-1 ("unknown") and stage-2 ("model") score names a method compares."""

    unknown: str
    model: str


METHODS: dict[str, Method] = {
    "energy+cos": Method("energy+cos", "centroid"),
    "msp": Method("msp", "joint"),
    **{f"knn{k}": Method("energy+cos", f"knn{k}") for k in range(1, MAX_K + 1)},
}


def check_method(method: str) -> str:
    """`method` if it is one of METHODS, else one clear error."""
    if method not in METHODS:
        raise InvalidArgument(f"unknown open-world method {method!r}; use {', '.join(METHODS)}")
    return method


def check_budget(budget: float, split: float = DEFAULT_SPLIT) -> None:
    """The budget is a share of photos, the split a share of the budget."""
    if not 0 <= budget < 1:
        raise InvalidArgument(f"--budget must be in [0, 1) (got {budget})")
    if not 0 <= split <= 1:
        raise InvalidArgument(f"--split must be in [0, 1] (got {split})")


@dataclass(frozen=True)
class Evidence:
    """What the scores of a batch of answers are computed from."""

    p_model: np.ndarray  # (N, models) stage 1's probabilities
    model: np.ndarray  # (N,) the answered model's index
    sku: np.ndarray  # (N,) the answered SKU's index
    confidence: np.ndarray  # (N,) the answer's p(model) x p(SKU | model)
    stage1: np.ndarray | None  # (N, D1) stage 1's fc embedding
    stage2: np.ndarray | None  # (N, D2) stage 2's sku_hidden embedding, with the answered model

    @classmethod
    def of(
        cls,
        results: list[dict[str, Any]],
        p_model: np.ndarray,
        embedding1: np.ndarray | None,
        proposals: list[list[int]],
        embedding2: np.ndarray | None,
        labels: Labels,
    ) -> Evidence:
        """From the cascade's answers; `embedding2` has one row per (image, proposed model)."""
        model = np.array([labels.model_index[r["model"]["label"]] for r in results], dtype=int)
        stage2 = None
        if embedding2 is not None:
            starts = np.cumsum([0] + [len(p) for p in proposals[:-1]])
            rows = [s + p.index(int(m)) for s, p, m in zip(starts, proposals, model, strict=True)]
            stage2 = embedding2[rows]
        return cls(
            p_model=p_model,
            model=model,
            sku=np.array([labels.sku_index[r["sku"]["label"]] for r in results], dtype=int),
            confidence=np.array([r["sku"]["confidence"] for r in results], dtype=np.float64),
            stage1=embedding1,
            stage2=stage2,
        )

    @classmethod
    def joined(cls, parts: Sequence[Evidence]) -> Evidence:
        """Several batches' evidence as one."""

        def stack(name: str) -> Any:
            arrays = [getattr(p, name) for p in parts]
            return None if any(a is None for a in arrays) else np.concatenate(arrays)

        return cls(**{name: stack(name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Bank:
    """What the embedding scores compare with (open_world.npz): unit-length centroids of the
    training photos' embeddings, a per-SKU sample of them for kNN, and stage 1's last layer
    (its saved model ends in a softmax, energy needs the logits)."""

    stage1_kernel: np.ndarray  # (D1, models)
    stage1_bias: np.ndarray  # (models,)
    model_centroids: np.ndarray  # (models, D1)
    sku_centroids: np.ndarray  # (SKUs, D2)
    neighbours: np.ndarray  # (K, D2)
    neighbour_model: np.ndarray  # (K,) the model of each neighbour's SKU
    model_of_sku: np.ndarray  # (SKUs,)

    def save(self, path: Path) -> None:
        np.savez_compressed(path, **{k: getattr(self, k) for k in self.__dataclass_fields__})

    @classmethod
    def load(cls, path: Path) -> Bank:
        with np.load(path) as data:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-9)


def raw_scores(evidence: Evidence, bank: Bank, *, neighbours: bool = True) -> dict[str, np.ndarray]:
    """Every score the evidence allows (higher: more like a known class), before the
    z-scoring of the combination."""
    scores = {"msp": evidence.p_model.max(axis=1), "joint": evidence.confidence}
    if evidence.stage1 is not None:
        logits = evidence.stage1.astype(np.float64) @ bank.stage1_kernel + bank.stage1_bias
        top = logits.max(axis=1)
        scores["energy"] = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
        scores["cos"] = (unit(evidence.stage1) @ bank.model_centroids.T).max(axis=1)
    if evidence.stage2 is not None:
        embedding = unit(evidence.stage2)
        own = bank.model_of_sku[None, :] == evidence.model[:, None]
        scores["centroid"] = np.where(own, embedding @ bank.sku_centroids.T, -np.inf).max(axis=1)
        if not neighbours:  # serving a method without kNN skips its sort
            return scores
        mine = bank.neighbour_model[None, :] == evidence.model[:, None]
        near = -np.sort(-np.where(mine, embedding @ bank.neighbours.T, -np.inf), axis=1)
        near = near[:, :MAX_K]
        count = np.minimum(mine.sum(axis=1), MAX_K)
        for k in range(1, MAX_K + 1):
            column = np.clip(np.minimum(k, count) - 1, 0, None)
            kth = near[np.arange(len(near)), column] if near.shape[1] else np.zeros(len(count))
            scores[f"knn{k}"] = np.where(count > 0, kth, -np.inf)
    return scores


@dataclass(frozen=True)
class OpenWorld:
    """A version's calibrated open-world decision."""

    method: str
    budget: float
    split: float
    thresholds: dict[str, dict[str, float | None]]  # method -> {"unknown": t1, "model": t2}
    stats: dict[str, list[float]]  # score -> [mean, std] on the validation photos
    bank: Bank
    info: dict[str, Any]  # how it was fitted (photos, time): reported, not used

    @classmethod
    def load(cls, folder: Path) -> OpenWorld | None:
        """The version's calibration, or None for a version without one."""
        path = folder / CALIBRATION_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            bank = Bank.load(folder / BANK_FILE)
            return cls(
                method=check_method(data["method"]),
                budget=float(data["budget"]),
                split=float(data["split"]),
                thresholds=data["thresholds"],
                stats=data["stats"],
                bank=bank,
                info=data.get("info", {}),
            )
        except (OSError, ValueError, KeyError, InvalidArgument) as exc:
            raise ConfigError(
                f"the open-world calibration of {folder.name} is unreadable ({exc}); run "
                f"`skuai models calibrate {folder.name}` again"
            ) from None

    def save(self, folder: Path) -> None:
        """open_world.npz, then open_world.json (whose presence makes the calibration count),
        each written whole before it replaces an older one."""
        bank = folder / f".{BANK_FILE}.{os.getpid()}.npz"
        self.bank.save(bank)
        os.replace(bank, folder / BANK_FILE)
        record = folder / f".{CALIBRATION_FILE}.{os.getpid()}"
        record.write_text(json.dumps(self.record(), indent=2) + "\n")
        os.replace(record, folder / CALIBRATION_FILE)

    def record(self) -> dict[str, Any]:
        """The open_world.json content."""
        return {
            "method": self.method,
            "budget": self.budget,
            "split": self.split,
            "thresholds": self.thresholds,
            "stats": self.stats,
            "methods": {name: vars(m) for name, m in METHODS.items()},
            "info": self.info,
        }

    def scores(self, evidence: Evidence, *, neighbours: bool = True) -> dict[str, np.ndarray]:
        """Every score the evidence allows, the z-scored combination included."""
        return with_combination(raw_scores(evidence, self.bank, neighbours=neighbours), self.stats)

    def method_for(self, evidence: Evidence) -> str:
        """The version's method, or the fallback where the runners gave no embeddings."""
        if evidence.stage1 is None or evidence.stage2 is None:
            return FALLBACK_METHOD
        return self.method

    def decide(self, evidence: Evidence) -> list[str]:
        """One decision per answer."""
        method = self.method_for(evidence)
        chosen = METHODS[method]
        scores = self.scores(evidence, neighbours=chosen.model.startswith("knn"))
        codes = decision_codes(scores, chosen, self.thresholds[method])
        return [DECISIONS[c] for c in codes]


def with_combination(
    scores: dict[str, np.ndarray], stats: dict[str, list[float]]
) -> dict[str, np.ndarray]:
    """`scores` and "energy+cos": the mean of energy and cosine, each z-scored by `stats`."""
    if "energy" in scores and "cos" in scores and stats:
        z = [(scores[name] - stats[name][0]) / stats[name][1] for name in ("energy", "cos")]
        return {**scores, "energy+cos": (z[0] + z[1]) / 2}
    return scores


def decision_codes(
    scores: dict[str, np.ndarray], method: Method, thresholds: dict[str, float | None]
) -> np.ndarray:
    """0 "sku", 1 "model", 2 "unknown" per answer (a threshold of None never flags)."""
    unknown = _below(scores[method.unknown], thresholds["unknown"])
    model = _below(scores[method.model], thresholds["model"])
    return np.where(unknown, 2, np.where(model, 1, 0))


def _below(score: np.ndarray, threshold: float | None) -> np.ndarray:
    if threshold is None:
        return np.zeros(len(score), dtype=bool)
    return np.asarray(score < threshold)


def fit_thresholds(
    first: np.ndarray, second: np.ndarray, budget: float, split: float
) -> dict[str, float | None]:
    """Thresholds over the scores of correctly classified photos such that at most
    floor(budget x n) of them fall below one: stage 1 takes floor(budget x split x n) (values
    strictly below the threshold, so ties only lose fewer), stage 2 the rest among the photos
    stage 1 kept. None: no photo to fit on (never flags)."""
    n = len(first)
    allowed = math.floor(budget * n + 1e-9)
    if n == 0:
        return {"unknown": None, "model": None}
    ordered = np.sort(first)
    t1 = float(ordered[min(math.floor(budget * split * n + 1e-9), n - 1)])
    kept = first >= t1
    lost = n - int(kept.sum())
    rest = np.sort(second[kept])
    t2 = float(rest[min(max(allowed - lost, 0), len(rest) - 1)]) if len(rest) else None
    return {"unknown": _finite(t1), "model": _finite(t2)}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# ---------------------------------------------------------------------- reporting


def targets_met(summary: dict[str, Any]) -> dict[str, bool | None]:
    """Each target of the issue: met, missed, or None where it was not measured."""
    met: dict[str, bool | None] = {}
    for key, (sense, bound) in TARGETS.items():
        value = summary.get(key, summary.get("unknowns", {}).get(key))
        met[key] = None if value is None else (value <= bound if sense == "<=" else value >= bound)
    return met


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The three open-world numbers with their targets, as (name, value) rows for the CLI."""
    unknowns = summary.get("unknowns", {})
    met = targets_met(summary)

    def row(name: str, key: str, value: Any, count: str) -> tuple[str, str]:
        sense, bound = TARGETS[key]
        verdict = {True: "met", False: "missed", None: "not measured"}[met[key]]
        shown = "-" if value is None else f"{value:.2%}"
        return name, f"{shown}{count} (target {sense} {bound:.0%}: {verdict})"

    lost = summary.get("known_sku_lost")
    correct = summary.get("known_correct_photos", 0)
    colourways = unknowns.get("unknown_colourways_flagged")
    models = unknowns.get("unknown_models_unknown")
    return [
        (
            "open-world method, budget",
            f"{summary.get('method')}, {summary.get('budget', 0):.0%} "
            f"(unknown < {_shown(summary.get('thresholds', {}).get('unknown'))}, "
            f"model < {_shown(summary.get('thresholds', {}).get('model'))})",
        ),
        row("known photos losing sku (test)", "known_sku_lost", lost, f" of {correct}"),
        row(
            "unknown colourways flagged",
            "unknown_colourways_flagged",
            colourways,
            f" of {unknowns.get('unknown_colourways', 0)}" if unknowns else "",
        ),
        row(
            "unknown models -> unknown",
            "unknown_models_unknown",
            models,
            f" of {unknowns.get('unknown_model_photos', 0)}" if unknowns else "",
        ),
    ]


def _shown(value: float | None) -> str:
    return "never" if value is None else f"{value:.4g}"


# ---------------------------------------------------------------------- fitting a version


def _centroid_samples(samples: Sequence[Sample], per_sku: int) -> list[Sample]:
    """Up to `per_sku` training photos of each SKU, spread over its photos (deterministic)."""
    by_sku: dict[tuple[str, str], list[Sample]] = {}
    for sample in sorted(samples, key=lambda s: str(s.path)):
        by_sku.setdefault((sample.model, sample.sku), []).append(sample)
    chosen = []
    for photos in by_sku.values():
        step = max(1, len(photos) / per_sku)
        chosen += [photos[int(i * step)] for i in range(min(per_sku, len(photos)))]
    return chosen


def fit_bank(cascade: Cascade, folder: Path, samples: Sequence[Sample], progress: Any) -> Bank:
    """Centroids and the kNN bank from training photos, each stage-2 embedding taken with the
    photo's true model, and stage 1's last layer from the saved model."""
    import keras

    from training.loading import load_arrays

    labels = cascade.labels
    first: list[np.ndarray] = []
    second: list[np.ndarray] = []
    models: list[np.ndarray] = []
    skus: list[np.ndarray] = []
    for start in range(0, len(samples), CHUNK):
        arrays = load_arrays(samples[start : start + CHUNK], labels, size=cascade.input_size)
        progress(len(samples[start : start + CHUNK]))
        if len(arrays.images) == 0:
            continue
        _, embedding1 = cascade.stage1(arrays.images)
        _, embedding2 = cascade.stage2(arrays.images, arrays.models)
        if embedding1 is None or embedding2 is None:
            raise ConfigError("calibration needs the float models' embeddings")
        first.append(embedding1)
        second.append(embedding2)
        models.append(arrays.models)
        skus.append(arrays.skus)
    if not first:
        raise DatasetError(f"none of the training photos of {folder.name} could be read")
    e1, e2 = np.concatenate(first), np.concatenate(second)
    m, s = np.concatenate(models), np.concatenate(skus)
    model_centroids = np.zeros((len(labels.models), e1.shape[1]), np.float32)
    sku_centroids = np.zeros((len(labels.skus), e2.shape[1]), np.float32)
    for i in np.unique(m):
        model_centroids[i] = e1[m == i].mean(axis=0)
    for i in np.unique(s):
        sku_centroids[i] = e2[s == i].mean(axis=0)
    keep = np.concatenate([np.flatnonzero(s == i)[:BANK_PHOTOS] for i in np.unique(s)])
    import training.architecture  # noqa: F401 - registers the custom layers

    stage1 = keras.saving.load_model(folder / "stage1.keras", compile=False)
    kernel, bias = stage1.get_layer("model").get_weights()
    return Bank(
        stage1_kernel=np.asarray(kernel, np.float64),
        stage1_bias=np.asarray(bias, np.float64),
        model_centroids=unit(model_centroids),
        sku_centroids=unit(sku_centroids),
        neighbours=unit(e2[keep]),
        neighbour_model=np.asarray(labels.model_of_sku)[s[keep]],
        model_of_sku=np.asarray(labels.model_of_sku),
    )


class _Events:
    def phase(self, name: str, total: int | None = None) -> Callable[[int], None]:
        return lambda n: None


def calibrate(
    folder: Path,
    data_dir: Path | None = None,
    *,
    budget: float = DEFAULT_BUDGET,
    method: str = DEFAULT_METHOD,
    split: float = DEFAULT_SPLIT,
    events: Any = None,
) -> dict[str, Any]:
    """Fit the open-world decision of the version in `folder` on its validation photos (its
    split.json, under `data_dir` or the dataset its config.json names), write open_world.json
    and open_world.npz, measure it on the test photos, and return that summary (metrics.json's
    "open_world"; updated there too when the version already has a metrics.json)."""
    from training.cascade import Cascade
    from training.open_world_measure import measure_known, score_or_none
    from training.split_record import version_part

    check_method(method)
    check_budget(budget, split)
    events = events or _Events()
    began = time.perf_counter()
    config = json.loads((folder / "config.json").read_text())
    recorded = config.get("data_dir")
    data_dir = data_dir or (Path(recorded) if recorded else None)
    if data_dir is None or not data_dir.is_dir():
        raise ConfigError(
            f"the dataset of {folder.name} ({data_dir or 'unknown'}) is not here: calibrating "
            "the open-world decision needs its validation photos (pass the dataset folder)"
        )
    seed = int(config.get("seed", 0))
    parts = {p: version_part(folder, data_dir, p, seed=seed) for p in ("train", "val", "test")}
    cascade = Cascade.load(folder, version=folder.name, open_world=False)
    train = _centroid_samples(parts["train"], CENTROID_PHOTOS)
    total = len(train) + len(parts["val"]) + len(parts["test"])
    progress = events.phase("calibrating the open-world decision", total)
    bank = fit_bank(cascade, folder, train, progress)
    val = score_or_none(cascade, parts["val"], progress)
    test = score_or_none(cascade, parts["test"], progress)
    stats: dict[str, list[float]] = {}
    thresholds: dict[str, dict[str, float | None]] = {
        name: {"unknown": None, "model": None} for name in METHODS
    }
    fitted_on = 0
    if val is not None:
        raw = raw_scores(val.evidence, bank)
        stats = {k: [float(raw[k].mean()), float(raw[k].std() + 1e-9)] for k in ("energy", "cos")}
        scores = with_combination(raw, stats)
        right = val.correct
        fitted_on = int(right.sum())
        for name, m in METHODS.items():
            thresholds[name] = fit_thresholds(
                scores[m.unknown][right], scores[m.model][right], budget, split
            )
    info = {
        "validation_photos": 0 if val is None else len(val.skus),
        "validation_correct": fitted_on,
        "centroid_photos": len(train),
        "bank_photos": len(bank.neighbours),
        "data_dir": str(data_dir.resolve()),
    }
    world = OpenWorld(method, budget, split, thresholds, stats, bank, info)
    summary = measure_known(world, test)
    info["seconds"] = round(time.perf_counter() - began, 1)
    world.save(folder)
    summary["calibration"] = info
    metrics_file = folder / "metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        metrics["open_world"] = summary
        metrics_file.write_text(json.dumps(metrics, indent=2) + "\n")
    return summary
