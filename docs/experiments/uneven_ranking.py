"""The post-hoc comparison of docs/training.md ("Uneven catalogs"), on one trained version.

For the version's own test split, and for fresh photos of the same SKUs (new draws of the
synthetic catalog, never written to disk, `--fresh` times each SKU's photo count), prints
stage-1 top-1, end-to-end model and SKU top-1, balanced accuracies and ECE under each way of
combining the stages (`joint`: the best-scoring pair; `model`: stage 1's top model, then its best
SKU), each logit adjustment tau (log p - tau * log training prior, both stages) and each
temperature (1, or fitted on the validation split).

    python docs/experiments/uneven_ranking.py REGISTRY/vN --fresh 0.4
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from shared.images import decode
from training.cascade import Cascade
from training.catalog_plan import image_rng
from training.dataset import scan, split
from training.evaluate import balanced_accuracy, expected_calibration_error
from training.labels import Labels
from training.loading import load_arrays
from training.ranking import RankingPolicy, propose_models
from training.synth import load_catalog, render_sneaker
from training.train_counts import TrainCounts

FRESH_OFFSET = 100_000  # photo indices far above any catalog's, so no photo repeats


def main() -> None:
    """Print the comparison table of one version."""
    parser = argparse.ArgumentParser()
    parser.add_argument("version", type=Path)
    parser.add_argument("--fresh", type=float, default=0.0)
    parser.add_argument("--taus", default="-0.5,0,0.5,1")
    args = parser.parse_args()
    folder = args.version
    config = json.loads((folder / "config.json").read_text())
    labels = Labels.load(folder / "labels.json")
    data = Path(config["data_dir"])
    parts = split(scan(data)[1], seed=config["seed"])
    cascade = Cascade.load(folder, version=folder.name)
    counts = TrainCounts.of(parts.train, labels)
    val = load_arrays(parts.val, labels, size=cascade.input_size)
    temps = fit_temperatures(cascade, labels, val.images, val.models, val.skus)
    sets = {"test split": load_arrays(parts.test, labels, size=cascade.input_size)}
    print(f"{folder}: balance {config['balance']}, temperatures {temps[0]:.2f} / {temps[1]:.2f}")
    rows = [(name, a.images, a.models, a.skus) for name, a in sets.items()]
    if args.fresh:
        rows.append(("fresh photos", *fresh_photos(data, labels, cascade.input_size, args.fresh)))
    for name, images, models, skus in rows:
        p_model, p_sku = stage_probs(cascade, labels, images)
        majority = float(np.mean(skus == int(np.argmax(counts.skus))))
        print(f"  {name}: {len(skus)} photos, majority-class SKU baseline {majority:.3f}")
        print("    combine tau   temp | stage1 model  sku   bal-model bal-sku ECE")
        for combine in ("joint", "model"):
            for tau in (float(t) for t in args.taus.split(",")):
                for temp_name, temp in (("1", (1.0, 1.0)), ("val", temps)):
                    r = score(labels, counts, p_model, p_sku, models, skus, combine, tau, temp)
                    print(
                        f"    {combine:7} {tau:4.1f} {temp_name:>4} | {r[0]:.3f}  {r[1]:.3f}  "
                        f"{r[2]:.3f}  {r[3]:.3f}     {r[4]:.3f}   {r[5]:.3f}"
                    )


def stage_probs(cascade: Cascade, labels: Labels, images: np.ndarray) -> tuple[np.ndarray, ...]:
    """p(model) (N, M), and p(SKU | model) for every model (N, M, S)."""
    n, models = len(images), len(labels.models)
    p_sku = np.stack(
        [cascade.sku_probs(images, np.full(n, m, np.int32)) for m in range(models)], axis=1
    )
    return cascade.model_probs(images), p_sku


def adjusted(p: np.ndarray, prior: np.ndarray, tau: float, temp: float, mask: np.ndarray):
    """softmax(log p / temp - tau * log prior) over the classes in `mask`."""
    logits = np.log(np.clip(p, 1e-12, 1)) / temp - tau * np.log(np.clip(prior, 1e-12, 1))
    logits = np.where(mask, logits, -np.inf)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def masks(labels: Labels) -> np.ndarray:
    """(M, S): which SKUs belong to each model."""
    out = np.zeros((len(labels.models), len(labels.skus)), bool)
    for m, members in enumerate(labels.membership):
        out[m, members] = True
    return out


def within_model_prior(labels: Labels, counts: TrainCounts) -> np.ndarray:
    """Each SKU's share of its model's training photos."""
    model_of = np.array(labels.model_of_sku)
    return counts.skus / counts.models[model_of]


def score(labels, counts, p_model, p_sku, models, skus, combine, tau, temps) -> list[float]:
    """stage-1 top-1, model top-1, SKU top-1, model and SKU balanced accuracy, ECE."""
    n, m_count = p_sku.shape[:2]
    member = masks(labels)
    q_model = adjusted(p_model, counts.models / counts.models.sum(), tau, temps[0], True)
    prior = within_model_prior(labels, counts)
    q_sku = np.stack(
        [adjusted(p_sku[:, m], prior, tau, temps[1], member[m]) for m in range(m_count)], 1
    )
    joint = q_model[:, :, None] * q_sku
    top = q_model.argmax(axis=1)
    if combine == "joint":  # the best-scoring pair among the models stage 1 proposes
        allowed = np.zeros((n, m_count), bool)
        for i, proposed in enumerate(propose_models(q_model, RankingPolicy())):
            allowed[i, proposed] = True
        flat = np.where(allowed[:, :, None], joint, -1).reshape(n, -1).argmax(axis=1)
        model, sku = flat // joint.shape[2], flat % joint.shape[2]
    else:
        model, sku = top, joint[np.arange(n), top].argmax(axis=1)
    confidence = joint[np.arange(n), model, sku]
    return [
        float(np.mean(top == models)),
        float(np.mean(model == models)),
        float(np.mean(sku == skus)),
        balanced_accuracy(models, model, m_count),
        balanced_accuracy(skus, sku, joint.shape[2]),
        expected_calibration_error(confidence, sku == skus),
    ]


def fit_temperatures(cascade, labels, images, models, skus) -> tuple[float, float]:
    """The temperatures of stage 1 and stage 2 that minimise validation log-loss (grid)."""
    n = len(images)
    p_model = cascade.model_probs(images)
    p_sku = cascade.sku_probs(images, models.astype(np.int32))
    member = masks(labels)[models]
    grid = np.exp(np.linspace(np.log(0.25), np.log(8), 60))

    def nll(p: np.ndarray, y: np.ndarray, t: float, mask: np.ndarray | bool) -> float:
        q = adjusted(p, np.ones(p.shape[1]), 0.0, t, mask)
        return float(-np.mean(np.log(np.clip(q[np.arange(n), y], 1e-12, 1))))

    t1 = min(grid, key=lambda t: nll(p_model, models, t, True))
    t2 = min(grid, key=lambda t: nll(p_sku, skus, t, member))
    return float(t1), float(t2)


def fresh_photos(data: Path, labels: Labels, size: int, share: float) -> tuple[np.ndarray, ...]:
    """New draws of every SKU of a synthetic catalog, `share` x its photo count (at least 1)."""
    catalog = load_catalog(data)
    document = json.loads((data / "catalog.json").read_text())
    photos = {s["label"]: s["images"] for s in document["skus"]}
    images, models, skus = [], [], []
    for m, model in enumerate(catalog.models):
        for s, sku in enumerate(catalog.skus_of(model.name)):
            for i in range(max(1, round(photos[sku.label] * share))):
                rng = image_rng(document["seed"], m, s, FRESH_OFFSET + i)
                image = render_sneaker(model, sku.colourway, size=document["size"], rng=rng)
                png = io.BytesIO()
                image.save(png, "PNG")
                images.append(decode(png.getvalue(), size=size, max_pixels=size * size * 64))
                models.append(labels.model_index[model.name])
                skus.append(labels.sku_index[sku.label])
    return np.stack(images), np.array(models), np.array(skus)


if __name__ == "__main__":
    main()
