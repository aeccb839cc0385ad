"""The unknown-detection comparison of issue 18 ("Open world"), on one demo-scale cascade.

Draws a synthetic catalog (demo settings, but 5 models x 4 SKUs so that some can be held out),
moves one whole model and one SKU of each other model out of it, trains a cascade in-process
with the demo's training settings, and scores three sets of photos with each method:

- the version's own test split (known SKUs),
- every photo of the held-out SKUs (unknown colourways of known models: should become "model"),
- every photo of the held-out model (should become "unknown").

Methods, on stage 1 (p(model)) and end-to-end (stage 1's top model, then stage 2's best SKU):
maximum softmax (MSP), energy (logsumexp of the logits), cosine distance to the nearest class
centroid of the penultimate layer and a diagonal Mahalanobis-lite distance (both with class
means of the training photos), and a combination (mean of the validation-standardised scores of
energy and centroid cosine). Reports AUROC against the known test photos, and the share of
unknowns flagged at the threshold that costs 5% of the correctly classified known validation
photos their "sku" decision (that loss measured again on the test photos); the two-threshold
decision ("unknown" by stage 1, else "model" by stage 2, 2.5% each); and stage 1's top-1 on the
held-out colourways (the share a "model" answer would name rightly). OUT is emptied first; the
results are also written to OUT/open_world_seedN.json. docs/experiments/open_world.md has the
numbers of seeds 7, 8 and 9 (about 3 minutes each on 2 cores).

    python docs/experiments/open_world.py OUT [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.images import decode
from training.labels import Labels
from training.loading import MAX_TRAINING_PIXELS, load_arrays
from training.split_record import recorded_samples

MODELS, SKUS_PER_MODEL = 5, 4  # the demo-scale catalog: 20 SKUs, 5 models
LOSS = 0.05  # the share of correctly classified known photos allowed to lose "sku"


@dataclass
class Scored:
    """Every method's score of one photo set (higher: more like a known class)."""

    stage1: dict[str, np.ndarray]
    stage2: dict[str, np.ndarray]
    correct: np.ndarray  # end-to-end SKU top-1 right (known photos only)


def main() -> None:
    """Draw, hold out, train, score, print the tables (and write them as JSON)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=0, help="0: the demo's (smoke tests: 1)")
    args = parser.parse_args()
    from dataclasses import replace

    from skuai.demo import DemoPlan
    from skuai.quiet import import_tensorflow_quietly

    plan = DemoPlan()
    plan = replace(plan, epochs=args.epochs or plan.epochs)
    started = time.perf_counter()
    catalog, held = args.out / "catalog", args.out / "held"
    draw(catalog, held, plan, args.seed)
    import_tensorflow_quietly()
    folder = train_version(catalog, args.out / "registry", plan, args.seed)
    trained_s = time.perf_counter() - started
    labels = Labels.load(folder / "labels.json")
    nets = Nets(folder, labels, plan.image_size)
    size = plan.image_size
    parts = {
        p: load_arrays(recorded_samples(folder, catalog, p), labels, size=size)
        for p in ("train", "val", "test")
    }
    nets.fit_centroids(parts["train"].images, parts["train"].models, parts["train"].skus)
    val = nets.score(parts["val"].images, parts["val"].skus)
    test = nets.score(parts["test"].images, parts["test"].skus)
    colourways = nets.score(load_folder(held / "skus", size), None)
    unknown_model = nets.score(load_folder(held / "model", size), None)
    nets.standardise([val, test, colourways, unknown_model], val)
    result = {
        "seed": args.seed,
        "train_s": round(trained_s, 1),
        "photos": {
            "val": len(val.correct),
            "test": len(test.correct),
            "colourways": len(colourways.correct),
            "model": len(unknown_model.correct),
        },
        "known_test_sku_top1": float(np.mean(test.correct)),
        "colourways_true_model_top1": routed(nets, labels, held / "skus", size),
        "colourway": table(val, test, colourways, "stage2")
        | table(val, test, colourways, "stage1"),
        "model": table(val, test, unknown_model, "stage1")
        | table(val, test, unknown_model, "stage2"),
        "rule": rule(val, test, colourways, unknown_model),
    }
    result["total_s"] = round(time.perf_counter() - started, 1)
    print_result(result)
    (args.out / f"open_world_seed{args.seed}.json").write_text(json.dumps(result, indent=1))


def draw(catalog: Path, held: Path, plan, seed: int) -> None:
    """The catalog, with the last model and one SKU of each other model moved under `held`."""
    from training.synth import synthesize

    shutil.rmtree(catalog.parent, ignore_errors=True)
    drawn = synthesize(
        catalog,
        models=MODELS,
        skus_per_model=SKUS_PER_MODEL,
        images_per_sku=plan.images_per_sku,
        size=plan.image_size,
        seed=seed,
    )
    names = sorted({sku.model for sku in drawn.skus})
    (held / "skus").mkdir(parents=True)
    shutil.move(catalog / names[-1], held / "model")
    rng = np.random.default_rng(seed)
    for model in names[:-1]:
        skus = sorted(p.name for p in (catalog / model).iterdir() if p.is_dir())
        chosen = skus[int(rng.integers(len(skus)))]
        shutil.move(catalog / model / chosen, held / "skus" / chosen)
    (catalog / "catalog.json").unlink()  # it would list the SKUs that are gone


def train_version(catalog: Path, registry_dir: Path, plan, seed: int) -> Path:
    """A cascade trained with the demo's settings; its version folder."""
    from training.registry import Registry
    from training.train import train

    return train(catalog, Registry(registry_dir), plan.train_config(seed)).path


def routed(nets: Nets, labels: Labels, root: Path, size: int) -> float:
    """Stage 1's top-1 on the held-out colourways: the share a "model" answer would get right
    (a synthetic SKU folder is named MODEL--COLOURWAY)."""
    hits = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        _, logits = nets.stage1(load_folder(folder, size))
        hits.append(logits.argmax(axis=1) == labels.model_index[folder.name.split("--")[0]])
    return float(np.mean(np.concatenate(hits)))


def load_folder(root: Path, size: int) -> np.ndarray:
    """Every image file under `root`, decoded as the workers decode."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return np.stack(
        [decode(p.read_bytes(), size=size, max_pixels=MAX_TRAINING_PIXELS) for p in files]
    )


class Nets:
    """The version's stages cut open: logits and penultimate embeddings of both."""

    def __init__(self, folder: Path, labels: Labels, size: int) -> None:
        import keras

        import training.architecture  # noqa: F401 - registers the custom layers

        s1 = keras.saving.load_model(folder / "stage1.keras", compile=False)
        s2 = keras.saving.load_model(folder / "stage2.keras", compile=False)
        self.s1 = keras.Model(s1.input, s1.get_layer("fc").output)
        self.w1, self.b1 = s1.get_layer("model").get_weights()
        self.s2 = keras.Model(
            s2.input,
            [
                s2.get_layer("sku_hidden").output,
                s2.get_layer("sku_logits").output,
                s2.get_layer("fc").output,  # before the model embedding is concatenated
            ],
        )
        self.member = np.zeros((len(labels.models), len(labels.skus)), bool)
        for m, skus in enumerate(labels.membership):
            self.member[m, skus] = True
        self.model_of_sku = np.array(labels.model_of_sku)
        self.mean: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def stage1(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(penultimate embedding, logits) of stage 1."""
        emb = np.asarray(self.s1.predict(images.astype(np.float32), batch_size=64, verbose=0))
        return emb, emb @ self.w1 + self.b1

    def stage2(self, images: np.ndarray, models: np.ndarray) -> tuple[np.ndarray, ...]:
        """(penultimate embedding, logits masked to the model's SKUs, trunk fc embedding)."""
        emb, logits, fc = self.s2.predict(
            {"image": images.astype(np.float32), "model": models.astype(np.int32)},
            batch_size=64,
            verbose=0,
        )
        masked = np.where(self.member[models], logits, -np.inf)
        return np.asarray(emb), masked, np.asarray(fc)

    def fit_centroids(self, images: np.ndarray, models: np.ndarray, skus: np.ndarray) -> None:
        """Class means (and a pooled per-dimension variance) of the training photos, each
        stage-2 embedding taken with the photo's true model."""
        e1, _ = self.stage1(images)
        e2, _, fc = self.stage2(images, models)
        for key, emb, y in (("stage1", e1, models), ("stage2", e2, skus), ("fc", fc, skus)):
            means = np.stack([emb[y == c].mean(axis=0) for c in range(y.max() + 1)])
            var = (emb - means[y]).var(axis=0) + 1e-6
            self.mean[key] = (means, var)

    def score(self, images: np.ndarray, skus: np.ndarray | None) -> Scored:
        """Every method's score of `images` (`skus`: their labels when known)."""
        e1, l1 = self.stage1(images)
        top = l1.argmax(axis=1)
        e2, l2, fc = self.stage2(images, top)
        stage1 = self.methods(e1, l1, "stage1", np.ones((len(images), self.member.shape[0]), bool))
        stage2 = self.methods(e2, l2, "stage2", self.member[top])
        p1 = softmax(l1).max(axis=1)
        stage2["joint MSP"] = p1 * stage2["MSP"]  # the SKU confidence skuai reports today
        trunk = self.methods(fc, l2, "fc", self.member[top])  # stage 2's fc layer instead
        stage2["fc centroid cos"] = trunk["centroid cos"]
        stage2["fc Mahalanobis-lite"] = trunk["Mahalanobis-lite"]
        sku = l2.argmax(axis=1)
        correct = sku == skus if skus is not None else np.zeros(len(images), bool)
        return Scored(stage1, stage2, correct)

    def methods(self, emb, logits, key, allowed) -> dict[str, np.ndarray]:
        """MSP, energy, centroid cosine and Mahalanobis-lite (nearest allowed class)."""
        means, var = self.mean[key]
        unit = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-9)
        units = means / (np.linalg.norm(means, axis=1, keepdims=True) + 1e-9)
        cos = np.where(allowed, unit @ units.T, -np.inf).max(axis=1)
        d2 = (((emb[:, None, :] - means[None]) ** 2) / var).sum(axis=2)
        maha = -np.where(allowed, d2, np.inf).min(axis=1)
        finite = np.where(np.isfinite(logits), logits, -1e30)
        top = finite.max(axis=1)
        energy = top + np.log(np.exp(finite - top[:, None]).sum(axis=1))
        return {
            "MSP": softmax(logits).max(axis=1),
            "energy": energy,
            "centroid cos": cos,
            "Mahalanobis-lite": maha,
        }

    def standardise(self, sets: list[Scored], val: Scored) -> None:
        """Add the combination: mean of energy and centroid cosine, each z-scored on the
        validation photos."""
        for key in ("stage1", "stage2"):
            ref = getattr(val, key)
            stats = {m: (ref[m].mean(), ref[m].std() + 1e-9) for m in ("energy", "centroid cos")}
            for s in sets:
                d = getattr(s, key)
                z = [(d[m] - mu) / sd for m, (mu, sd) in stats.items()]
                d["energy+cos"] = (z[0] + z[1]) / 2


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the finite logits of each row."""
    finite = np.where(np.isfinite(logits), logits, -1e30)
    e = np.exp(finite - finite.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """P(a known photo scores above an unknown one), ties counted half."""
    diff = known[:, None] - unknown[None, :]
    return float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))


def threshold(val: Scored, key: str, method: str, loss: float = LOSS) -> float:
    """The score below which `loss` of the correctly classified validation photos fall."""
    return float(np.quantile(getattr(val, key)[method][val.correct], loss))


def table(val: Scored, test: Scored, unknown: Scored, key: str) -> dict[str, dict[str, float]]:
    """Per method: AUROC (known test photos vs unknowns), flagged share of unknowns and lost
    share of correctly classified known test photos at the validation threshold."""
    rows = {}
    for method, scores in getattr(unknown, key).items():
        known = getattr(test, key)[method]
        t = threshold(val, key, method)
        rows[f"{key} {method}"] = {
            "auroc": auroc(known, scores),
            "flagged": float(np.mean(scores < t)),
            "known_lost": float(np.mean(known[test.correct] < t)),
        }
    return rows


def rule(val: Scored, test: Scored, colourways: Scored, model: Scored) -> dict[str, float]:
    """The decision as a version would make it: "unknown" below a stage-1 threshold, else
    "model" below a stage-2 threshold, else "sku"; each threshold spends half the 5% budget."""
    out = {}
    for m1, m2 in (
        ("energy+cos", "energy+cos"),
        ("centroid cos", "centroid cos"),
        ("MSP", "MSP"),
        ("Mahalanobis-lite", "energy+cos"),
    ):
        t1 = threshold(val, "stage1", m1, LOSS / 2)
        t2 = threshold(val, "stage2", m2, LOSS / 2)

        name = f"stage1 {m1} / stage2 {m2}"
        out[name] = {
            "known_lost": float(np.mean(decide(test, m1, t1, m2, t2)[test.correct] > 0)),
            "colourways_flagged": float(np.mean(decide(colourways, m1, t1, m2, t2) > 0)),
            "model_unknown": float(np.mean(decide(model, m1, t1, m2, t2) == 2)),
        }
    return out


def decide(s: Scored, m1: str, t1: float, m2: str, t2: float) -> np.ndarray:
    """0 "sku", 1 "model", 2 "unknown" for each photo of `s`."""
    unknown = s.stage1[m1] < t1
    return np.where(unknown, 2, np.where(s.stage2[m2] < t2, 1, 0))


def print_result(result: dict) -> None:
    """The tables as plain text."""
    print(
        f"seed {result['seed']}: trained in {result['train_s']} s, total {result['total_s']} s,"
        f" photos {result['photos']}, known test SKU top-1 {result['known_test_sku_top1']:.3f},"
        f" held-out colourways' true model top-1 {result['colourways_true_model_top1']:.3f}"
    )
    for kind in ("colourway", "model"):
        print(f"  unknown {kind}:  method | AUROC | flagged at 5% | known lost (test)")
        for name, row in result[kind].items():
            print(
                f"    {name:28} {row['auroc']:.3f}  {row['flagged']:.3f}  {row['known_lost']:.3f}"
            )
    print("  rule: known lost | colourways flagged | unknown model -> unknown")
    for name, row in result["rule"].items():
        print(
            f"    {name:46} {row['known_lost']:.3f}  {row['colourways_flagged']:.3f}  "
            f"{row['model_unknown']:.3f}"
        )


if __name__ == "__main__":
    main()
