"""Incremental versions (`skuai train DATA --from VERSION`, issue 18) against full trains, side by
side in one run, at demo scale.

Draws a synthetic catalog (5 models x 4 SKUs x 80 photos of 64 px, the demo's training settings)
and two smaller ones cut from it: without one SKU of each of four models ("colourways"), and
without the fifth model ("model"). Trains a full version of each of the three, then an
incremental version of each smaller one with the full catalog (`train_from`), and compares:

- time: the whole `train` / `train_from` call (data check, split, fitting, evaluation,
  open-world calibration, writing), and the incremental's speed-up over the full train;
- new SKUs' top-1: end to end, on the new SKUs' validation and test photos (never fitted on;
  24 a SKU rather than the 8 of the test split, so one photo is about a point), incremental
  against the full train of the same data (whose split gives these SKUs the same photos);
- known SKUs' top-1: on the known SKUs' validation and test photos, incremental against its
  parent (the incremental version keeps its parent's split, so these are the same photos);
- the test-split numbers metrics.json records.

OUT is emptied first unless --reuse, which keeps the catalogs and full versions of an earlier
run and retrains only the incremental versions. Results: OUT/incremental_seedN.json and a table.

    python docs/experiments/incremental.py OUT [--seed 7] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

MODELS, SKUS_PER_MODEL = 5, 4


def main() -> None:
    """Draw, train the full versions, train the incremental ones, print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=0, help="0: the demo's (smoke tests: 1)")
    parser.add_argument("--reuse", action="store_true", help="keep OUT's catalogs and versions")
    args = parser.parse_args()
    from dataclasses import replace

    from skuai.demo import DemoPlan
    from skuai.quiet import import_tensorflow_quietly
    from training.registry import Registry

    plan = DemoPlan()
    plan = replace(plan, epochs=args.epochs or plan.epochs)
    if not args.reuse:
        shutil.rmtree(args.out, ignore_errors=True)
        draw(args.out, plan, args.seed)
    import_tensorflow_quietly()
    registry = Registry(args.out / "registry")
    full = full_versions(args.out, registry, plan.train_config(args.seed), reuse=args.reuse)
    rows = {}
    for kind in ("colourways", "model"):
        parent = full[kind]["version"]
        rows[kind] = incremental_row(args.out, registry, parent, full["full"])
    result = {"seed": args.seed, "full": full, "incremental": rows}
    (args.out / f"incremental_seed{args.seed}.json").write_text(json.dumps(result, indent=1))
    print_table(result)


def draw(out: Path, plan, seed: int) -> None:
    """OUT/full, and OUT/colourways and OUT/model cut from it (file names kept, so that an
    incremental version finds its parent's photos by path)."""
    from training.synth import synthesize

    synthesize(
        out / "full",
        models=MODELS,
        skus_per_model=SKUS_PER_MODEL,
        images_per_sku=plan.images_per_sku,
        size=plan.image_size,
        seed=seed,
    )
    (out / "full" / "catalog.json").unlink()  # not part of the layout
    models = sorted(p.name for p in (out / "full").iterdir() if p.is_dir())
    rng = np.random.default_rng(seed)
    shutil.copytree(out / "full", out / "colourways")
    for model in models[:-1]:
        skus = sorted(p.name for p in (out / "full" / model).iterdir())
        shutil.rmtree(out / "colourways" / model / skus[int(rng.integers(len(skus)))])
    shutil.copytree(out / "full", out / "model")
    shutil.rmtree(out / "model" / models[-1])


def full_versions(out: Path, registry, config, *, reuse: bool) -> dict[str, dict]:
    """A full version of each catalog (the ones an earlier run recorded, with --reuse)."""
    from training.train import train

    recorded = out / "full_versions.json"
    if reuse and recorded.is_file():
        return json.loads(recorded.read_text())
    found = {}
    for name in ("colourways", "model", "full"):
        began = time.perf_counter()
        outcome = train(out / name, registry, config)
        found[name] = {"version": outcome.version, "seconds": time.perf_counter() - began}
        print(f"full train of {name}: {outcome.version} in {found[name]['seconds']:.0f} s")
    recorded.write_text(json.dumps(found, indent=1))
    return found


def incremental_row(out: Path, registry, parent: str, full: dict) -> dict:
    """Train `parent` --from with the full catalog; its numbers beside the full train's."""
    from training.incremental import top1_of, train_from

    began = time.perf_counter()
    outcome = train_from(out / "full", registry, parent)
    seconds = time.perf_counter() - began
    added = set(outcome.metrics["lineage"]["added_skus"])
    held = held_out(registry, outcome.version, out / "full")
    full_metrics = registry.path(full["version"]) / "metrics.json"
    full_test = json.loads(full_metrics.read_text())
    inc, ref, par = (
        top1s(registry, v, held, added) for v in (outcome.version, full["version"], parent)
    )
    return {
        "version": outcome.version,
        "seconds": seconds,
        "full_seconds": full["seconds"],
        "speedup": full["seconds"] / seconds,
        "phases": outcome.metrics["timings_seconds"],
        "added_skus": sorted(added),
        "held_photos": {"new": inc["new_n"], "known": inc["known_n"]},
        "new_top1": inc["new"],
        "new_top1_full": ref["new"],
        "known_top1": inc["known"],
        "known_top1_parent": par["known"],
        "known_top1_full": ref["known"],
        "test_split": {
            "new_top1": outcome.metrics["incremental"]["new_sku_top1"],
            "new_top1_full": top1_of(full_test, lambda sku: sku in added),
            "known_top1": outcome.metrics["incremental"]["known_sku_top1"],
        },
    }


def held_out(registry, version: str, data_dir: Path) -> list:
    """The validation and test photos of `version`'s split (never fitted on)."""
    from training.split_record import recorded_samples

    folder = registry.path(version)
    return [s for part in ("val", "test") for s in recorded_samples(folder, data_dir, part)]


def top1s(registry, version: str, samples: list, added: set[str]) -> dict:
    """End-to-end SKU top-1 of `version` on the new SKUs' photos and on the known SKUs' photos
    (photos of SKUs it lacks count as wrong)."""
    from training.cascade import Cascade
    from training.loading import load_arrays

    cascade = Cascade.load(registry.path(version), version=version)
    size = cascade.input_size
    arrays = load_arrays(samples, _labels_of(samples), size=size)
    predicted = [r["sku"]["label"] for r in cascade.predict(arrays.images)]
    truth = [s.sku for s in samples]
    hits = np.array([p == t for p, t in zip(predicted, truth, strict=True)])
    new = np.array([t in added for t in truth])
    return {
        "new": float(hits[new].mean()),
        "known": float(hits[~new].mean()),
        "new_n": int(new.sum()),
        "known_n": int((~new).sum()),
    }


def _labels_of(samples: list):
    from training.dataset import labels_of

    return labels_of(samples)


def print_table(result: dict) -> None:
    """The comparison as a Markdown table (docs/training.md, "Incremental versions")."""
    print(f"seed {result['seed']}; top-1 on the held-out (validation + test) photos")
    print(
        "| added | full train | incremental | speed-up | new SKUs: incremental | full | "
        "known SKUs: incremental | parent | full |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, row in result["incremental"].items():
        what = f"{len(row['added_skus'])} SKUs" if kind == "colourways" else "1 model (4 SKUs)"
        print(
            f"| {what} | {row['full_seconds']:.0f} s | {row['seconds']:.1f} s | "
            f"{row['speedup']:.1f}x | {row['new_top1']:.2%} | {row['new_top1_full']:.2%} | "
            f"{row['known_top1']:.2%} | {row['known_top1_parent']:.2%} | "
            f"{row['known_top1_full']:.2%} |"
        )
    for kind, row in result["incremental"].items():
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in row["phases"].items())
        print(
            f"{kind}: photos {row['held_photos']}; phases: {phases}; test split {row['test_split']}"
        )


if __name__ == "__main__":
    main()
