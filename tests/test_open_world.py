"""The open-world decision (issue 18): a tiny cascade trained in this module on a synthetic catalog
with one SKU of each model and one whole model held out; training calibrates it, `skuai models
calibrate` refits it (also on a version without calibration), the held-out photos are measured,
and int8 keeps deciding."""

from __future__ import annotations

import io
import json
import shutil
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from shared.images import decode
from shared.settings import Settings
from tests.support.isolation import Isolated, OwnWorkers, isolated_app
from tests.support.polling import wait_until
from tests.support.processes import run_skuai
from training.open_world import (
    BANK_FILE,
    CALIBRATION_FILE,
    DECISIONS,
    METHODS,
    Bank,
    Evidence,
    OpenWorld,
    decision_codes,
    fit_thresholds,
    photos_needed,
    summary_rows,
    z_stats,
)

# 4 models x 3 SKUs; the last model and the last SKU of each other model are held out, so the
# version knows 3 models x 2 SKUs.
MODELS, SKUS_PER_MODEL, PHOTOS_PER_SKU = 4, 3, 40
EPOCHS = 15
# A budget large enough that the tiny version's thresholds sit inside its score spread (at 5%
# a stage needs 40 correct validation photos to spend its 2.5% on; this version has about 47,
# so each threshold sits at its second-lowest score); measured on this catalog: the unknown
# model 42% "unknown", the known test photos 8% (at 0.2, with 32 centroid photos a SKU).
WIDE_BUDGET = "0.25"


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the catalog the version trains on, the held-out photos: DIR/<model>/<sku>/)."""
    from training.synth import synthesize

    root = tmp_path_factory.mktemp("open_world")
    catalog, held = root / "catalog", root / "held"
    synthesize(
        catalog,
        models=MODELS,
        skus_per_model=SKUS_PER_MODEL,
        images_per_sku=PHOTOS_PER_SKU,
        size=32,
        seed=5,
    )
    (catalog / "catalog.json").unlink(missing_ok=True)  # it would list the SKUs moved away
    models = sorted(p.name for p in catalog.iterdir() if p.is_dir())
    held.mkdir()
    shutil.move(catalog / models[-1], held / models[-1])
    for model in models[:-1]:
        last = sorted(p.name for p in (catalog / model).iterdir() if p.is_dir())[-1]
        (held / model).mkdir()
        shutil.move(catalog / model / last, held / model / last)
    return catalog, held


@pytest.fixture(scope="module")
def registry_root(held_out: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry of this module's own holding one calibrated version, v1."""
    from training.config import TrainConfig
    from training.registry import Registry
    from training.train import train

    root = tmp_path_factory.mktemp("open_world_registry")
    config = TrainConfig(
        input_size=32,
        width=0.125,
        weights="none",
        batch_size=16,
        augment=False,
        epochs=EPOCHS,
        patience=EPOCHS,
        learning_rate=3e-3,  # as test_uneven: enough steps to learn at this size
        precision="fp32",
    )
    assert train(held_out[0], Registry(root), config).version == "v1"
    return root


def _photos(root: Path) -> np.ndarray:
    files = sorted(p for p in root.rglob("*.png"))
    return np.stack([decode(p.read_bytes(), size=32, max_pixels=10**6) for p in files])


def test_thresholds_spend_at_most_the_budget_on_the_fitting_photos() -> None:
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=200), rng.normal(size=200)
    t = fit_thresholds(first, second, budget=0.05, split=0.5)
    assert t["unknown"] is not None and t["model"] is not None
    lost_first = first < t["unknown"]
    lost = lost_first | (second < t["model"])
    assert lost_first.sum() == 5  # floor(0.025 x 200)
    assert lost.sum() == 10  # the rest of the budget, spent by stage 2 on the photos kept
    never = {"unknown": None, "model": None}
    assert fit_thresholds(first, second, 0.0, 0.5) == never  # a zero budget flags nothing
    assert fit_thresholds(first[:0], second[:0], 0.05, 0.5) == never


def test_a_threshold_needs_enough_photos_to_spend_its_share_of_the_budget() -> None:
    """Below ceil(1 / (budget x share)) photos the quantile would be the lowest score (one
    photo of 10 is 10%, twice a 5% budget): that threshold never flags instead."""
    rng = np.random.default_rng(1)
    first, second = rng.normal(size=40), rng.normal(size=40)
    assert photos_needed(0.05, 0.5) == 40 and photos_needed(0.25, 0.5) == 8
    assert photos_needed(0.05, 0.0) is None
    for n in (1, 10, 39):
        assert fit_thresholds(first[:n], second[:n], 0.05, 0.5) == {"unknown": None, "model": None}
    t = fit_thresholds(first, second, 0.05, 0.5)
    assert t["unknown"] is not None and t["model"] is not None
    assert (first < t["unknown"]).sum() == 1
    assert ((first < t["unknown"]) | (second < t["model"])).sum() == 2  # floor(0.05 x 40)
    # all to stage 1: stage 2 spends nothing, and the reverse
    assert fit_thresholds(first, second, 0.05, 1.0)["model"] is None
    assert fit_thresholds(first, second, 0.05, 0.0)["unknown"] is None
    assert fit_thresholds(first, second, 0.05, 0.0)["model"] is not None


def test_z_scores_of_one_photo_or_identical_scores_stay_small() -> None:
    one = {"energy": np.array([3.0]), "cos": np.array([0.5])}
    same = {"energy": np.full(5, 3.0), "cos": np.full(5, 0.5)}
    for scores in (one, same):
        stats = z_stats(scores)
        assert all(std >= 1e-3 for _, std in stats.values()), stats
        assert abs((3.01 - stats["energy"][0]) / stats["energy"][1]) <= 10
    assert z_stats({"energy": np.array([1.0])}) == {}  # no cosine: no combination


def _tiny_world(stats: dict, thresholds: dict) -> tuple[OpenWorld, Evidence]:
    """A calibration over 2 models x 1 SKU with 4-dimensional embeddings, and 3 answers."""
    rng = np.random.default_rng(2)
    bank = Bank(
        stage1_kernel=rng.normal(size=(4, 2)),
        stage1_bias=np.zeros(2),
        model_centroids=np.eye(2, 4, dtype=np.float32),
        sku_centroids=np.eye(2, 4, dtype=np.float32),
        neighbours=np.eye(2, 4, dtype=np.float32),
        neighbour_model=np.array([0, 1]),
        model_of_sku=np.array([0, 1]),
    )
    evidence = Evidence(
        p_model=np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]),
        model=np.array([0, 1, 0]),
        sku=np.array([0, 1, 0]),
        confidence=np.array([0.9, 0.8, 0.5]),
        stage1=rng.normal(size=(3, 4)),
        stage2=rng.normal(size=(3, 4)),
    )
    every = {name: thresholds for name in METHODS}
    return OpenWorld("energy+cos", 0.05, 0.5, every, stats, bank, {}), evidence


def test_a_threshold_of_none_never_flags_even_without_its_score() -> None:
    """A calibration whose validation gave no statistics has no "energy+cos" score: with its
    thresholds None every answer is "sku" (it raised KeyError in every worker chunk)."""
    world, evidence = _tiny_world({}, {"unknown": None, "model": None})
    assert world.decide(evidence) == ["sku"] * 3
    scores = {"joint": np.array([0.1, 0.9])}
    assert list(decision_codes(scores, METHODS["energy+cos"], world.thresholds["msp"])) == [0, 0]
    # with statistics and thresholds every decision is reachable
    stats = {"energy": [0.0, 1.0], "cos": [0.0, 1.0]}
    world, evidence = _tiny_world(stats, {"unknown": 1e9, "model": None})
    assert world.decide(evidence) == ["unknown"] * 3


def test_summary_rows_say_why_a_version_answers_sku() -> None:
    rows = dict(
        summary_rows(
            {
                "calibrated": False,
                "reason": 'no readable validation photo under /d: every answer is "sku"',
            }
        )
    )
    assert rows == {
        "open-world decision": "not calibrated: no readable validation photo under /d: every "
        'answer is "sku"'
    }
    summary = {
        "calibrated": True,
        "method": "energy+cos",
        "budget": 0.05,
        "thresholds": {"unknown": None, "model": None},
        "calibration": {
            "validation_correct": 12,
            "photos_needed": {"unknown": 40, "model": 40},
            "embeddings": "fp32",
        },
    }
    rows = dict(summary_rows(summary))
    assert rows["open-world method, budget"] == "energy+cos, 5% (unknown < never, model < never)"
    assert "fp32 embeddings (int8 applies the same thresholds)" in rows["open-world fitted on"]
    assert rows["thresholds that never flag"] == (
        "unknown needs >= 40, model needs >= 40 correct photos"
    )


def test_training_calibrates_the_version(registry_root: Path, held_out: tuple[Path, Path]) -> None:
    folder = registry_root / "v1"
    assert (folder / CALIBRATION_FILE).is_file() and (folder / BANK_FILE).is_file()
    record = json.loads((folder / CALIBRATION_FILE).read_text())
    assert record["method"] == "energy+cos" and record["budget"] == 0.05
    assert set(record["thresholds"]) == set(METHODS)
    summary = json.loads((folder / "metrics.json").read_text())["open_world"]
    assert summary["method"] == "energy+cos"
    assert summary["thresholds"] == record["thresholds"]["energy+cos"]
    assert (
        sum(summary["decisions"].values())
        == json.loads((folder / "metrics.json").read_text())["test_images"]
    )
    # the test photos' share is measured, not bounded: thresholds at the 2.5% quantiles of ~47
    # validation scores are noisy estimates (on one machine 5 of 23 correct test photos lost
    # "sku", in CI within one photo of 5%): the trained weights differ from CPU to CPU
    correct = summary["known_correct_photos"]
    assert correct > 0 and 0 <= summary["known_sku_lost"] <= 1
    # each stage's 2.5% needs 40 correct validation photos: with fewer it never flags
    info = summary["calibration"]
    assert info["embeddings"] == "fp32" and info["photos_needed"] == {"unknown": 40, "model": 40}
    fitted = info["validation_correct"] >= 40
    assert (summary["thresholds"]["unknown"] is not None) == fitted
    assert (summary["thresholds"]["model"] is not None) == fitted

    from training.cascade import Cascade
    from training.open_world_measure import score_photos
    from training.split_record import recorded_samples

    cascade = Cascade.load(folder, version="v1")
    results = cascade.predict(_photos(held_out[0])[:20])
    assert all(r["decision"] in DECISIONS for r in results)
    assert cascade.open_world is not None
    # the guarantee: on the correct validation photos the thresholds were fitted on, at most
    # floor(5%) lose "sku" (on any machine's weights)
    val = score_photos(cascade, recorded_samples(folder, held_out[0], "val"))
    decided = np.array(cascade.open_world.decide(val.evidence))[val.correct]
    assert len(decided) == info["validation_correct"]
    assert (decided != "sku").sum() <= int(0.05 * len(decided)), list(decided)


def test_evaluate_prints_the_open_world_numbers_with_their_targets(
    registry_root: Path, held_out: tuple[Path, Path]
) -> None:
    catalog, held = held_out
    run = run_skuai(
        "models",
        "evaluate",
        "v1",
        str(catalog),
        "--test-split",
        "--unknowns",
        str(held),
        "--registry",
        str(registry_root),
    )
    assert run.returncode == 0, run.stderr
    printed = run.stderr  # the console writes to stderr, stdout is for --json
    photos = 3 * PHOTOS_PER_SKU
    assert "unknown colourways flagged" in printed and f" of {photos} (target >= 90%: " in printed
    assert "unknown models -> unknown" in printed and "(target >= 95%: " in printed
    assert "known photos losing sku (test)" in printed and "(target <= 5%: " in printed


def test_calibrate_a_version_that_has_no_calibration(
    registry_root: Path, held_out: tuple[Path, Path], tmp_path: Path
) -> None:
    from training.cascade import Cascade

    copy = tmp_path / "registry"
    shutil.copytree(registry_root / "v1", copy / "v1")
    folder = copy / "v1"
    (folder / CALIBRATION_FILE).unlink()
    (folder / BANK_FILE).unlink()
    metrics = json.loads((folder / "metrics.json").read_text())
    del metrics["open_world"]
    (folder / "metrics.json").write_text(json.dumps(metrics))
    images = _photos(held_out[1])
    # no calibration: every answer is a catalog SKU (the documented fallback)
    assert {r["decision"] for r in Cascade.load(folder, version="v1").predict(images)} == {"sku"}

    base = ["models", "calibrate", "v1", "--registry", str(copy)]
    run = run_skuai(*base, "--budget", WIDE_BUDGET, "--unknowns", str(held_out[1]), "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    unknowns = summary["unknowns"]
    assert summary["budget"] == float(WIDE_BUDGET) and unknowns["photos"] == len(images)
    assert unknowns["unknown_colourways"] == unknowns["unknown_model_photos"] == 3 * PHOTOS_PER_SKU
    assert set(unknowns["by_method"]) == set(METHODS)
    assert json.loads((folder / "metrics.json").read_text())["open_world"] == summary
    assert json.loads((folder / CALIBRATION_FILE).read_text())["budget"] == float(WIDE_BUDGET)
    # the held-out model's photos are answered "unknown" clearly more often than known ones
    tested = sum(summary["decisions"].values())
    known_unknown = summary["decisions"]["unknown"] / tested
    assert unknowns["unknown_models_unknown"] >= known_unknown + 0.15, summary
    known_flagged = 1 - summary["decisions"]["sku"] / tested
    decided = [r["decision"] for r in Cascade.load(folder, version="v1").predict(images)]
    assert 1 - decided.count("sku") / len(decided) >= known_flagged + 0.1, (decided, summary)

    for args, message in (
        (["--budget", "1.5"], "--budget must be in [0, 1)"),
        (["--unknowns", str(held_out[0])], "should hold only SKUs v1 was not trained on"),
        (["--data", str(tmp_path / "nowhere")], "is not here"),
    ):
        refused = run_skuai(*base, *args)
        assert refused.returncode == 1 and message in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    assert run_skuai(*base, "--method", "nope").returncode == 2  # click names the choices


def test_a_version_without_validation_photos_is_not_calibrated_and_answers_sku(
    registry_root: Path, held_out: tuple[Path, Path], tmp_path: Path
) -> None:
    """An empty validation split wrote a calibration without statistics whose every prediction
    raised KeyError; now nothing is written, metrics.json says why (replaced whole, not
    rewritten in place under a reader), and a calibrated version keeps its calibration."""
    from shared.errors import DatasetError
    from training.cascade import Cascade
    from training.open_world import calibrate

    folder = tmp_path / "v1"
    shutil.copytree(registry_root / "v1", folder)
    calibrated = (folder / CALIBRATION_FILE).read_bytes()
    split = json.loads((folder / "split.json").read_text())
    split["files"] = [row for row in split["files"] if row["split"] != "val"]
    (folder / "split.json").write_text(json.dumps(split))
    with pytest.raises(DatasetError, match="its calibration is kept"):
        calibrate(folder, held_out[0])
    assert (folder / CALIBRATION_FILE).read_bytes() == calibrated

    (folder / CALIBRATION_FILE).unlink()
    (folder / BANK_FILE).unlink()
    inode = (folder / "metrics.json").stat().st_ino
    summary = calibrate(folder, held_out[0])
    assert summary["calibrated"] is False and "no readable validation photo" in summary["reason"]
    assert not (folder / CALIBRATION_FILE).exists() and not (folder / BANK_FILE).exists()
    assert (folder / "metrics.json").stat().st_ino != inode
    assert json.loads((folder / "metrics.json").read_text())["open_world"] == summary
    assert not list(folder.glob(".*"))  # no temporary file left behind
    results = Cascade.load(folder, version="v1").predict(_photos(held_out[1])[:8])
    assert {r["decision"] for r in results} == {"sku"}


def test_int8_decides_with_its_embeddings_and_falls_back_to_msp_without(
    registry_root: Path, held_out: tuple[Path, Path], tmp_path: Path
) -> None:
    from training.cascade import Cascade
    from training.labels import Labels
    from training.loading import load_arrays
    from training.quantize import quantize_version
    from training.split_record import recorded_samples

    folder = tmp_path / "v1"
    shutil.copytree(registry_root / "v1", folder)
    labels = Labels.load(folder / "labels.json")
    train = load_arrays(recorded_samples(folder, held_out[0], "train")[:16], labels, size=32)
    quantize_version(folder, train.images, train.models)
    int8 = Cascade.load(folder, version="v1", precision="int8")
    images = _photos(held_out[1])
    results, evidence, _ = int8.predict_with_evidence(images)
    assert evidence is not None and evidence.stage1 is not None and evidence.stage2 is not None
    assert int8.open_world is not None and int8.open_world.method_for(evidence) == "energy+cos"
    assert all(r["decision"] in DECISIONS for r in results)
    fp32 = Cascade.load(folder, version="v1").predict(images)
    assert {r["decision"] for r in fp32} != {"sku"}  # the comparison below means something
    # int8 applies the thresholds fitted on fp32 embeddings: it flags far fewer of these photos
    # (5 of 240 against 60 at 5%, 98 against 171 at 25%; docs/training.md) and keeps "sku" where
    # fp32 does. Not overall agreement: that follows how many fp32 flags, which moves with the
    # weights each CPU trains (60 of 240 on one, 145 on another: agreement 0.52)
    ours, theirs = (np.array([r["decision"] for r in rs]) for rs in (fp32, results))
    assert (theirs != "sku").sum() < (ours != "sku").sum(), (ours, theirs)
    kept = np.mean(theirs[ours == "sku"] == "sku")
    assert kept >= 0.8, kept
    # int8 models quantized before the embeddings were exported give none: msp decides
    bare = replace(evidence, stage1=None, stage2=None)
    assert int8.open_world.method_for(bare) == "msp"
    assert set(int8.open_world.decide(bare)) <= set(DECISIONS)


# --- through the real API and a real worker ----------------------------------------------------


def _upload(iso: Isolated, photos: list[bytes]) -> str:
    files = [(io.BytesIO(data), f"{i}.png") for i, data in enumerate(photos)]
    response = iso.client.post(
        "/v1/batches", data={"images": files}, content_type="multipart/form-data"
    )
    assert response.status_code == 202, response.get_json()
    return str(response.get_json()["id"])


def _status(iso: Isolated, batch_id: str) -> dict:
    return dict(iso.client.get(f"/v1/batches/{batch_id}").get_json())


def _decisions(iso: Isolated, batch_id: str) -> dict[str, tuple[str, str]]:
    """ref -> (decision, model_version) of every job of a batch."""
    found: dict[str, tuple[str, str]] = {}
    cursor: str | None = "0"
    while cursor is not None:
        page = iso.client.get(
            f"/v1/batches/{batch_id}/results", query_string={"cursor": cursor, "limit": 100}
        ).get_json()
        for item in page["items"]:
            found[item["ref"]] = (item["result"]["decision"], item["model_version"])
        cursor = page["next_cursor"]
    return found


def test_decisions_through_the_api_and_a_pinned_batch_keeps_its_versions(
    registry_root: Path,
    held_out: tuple[Path, Path],
    own_db: Settings,
    own_workers: OwnWorkers,
    tmp_path: Path,
) -> None:
    """v1 as trained (5% budget) and v2, the same weights calibrated with a 25% budget: the
    API answers each photo as its batch's version decides offline, unknown-model photos are
    answered "unknown" more often than known ones, and a batch that v2's activation overtakes
    keeps v1's decisions to the end."""
    from training.cascade import Cascade
    from training.open_world import calibrate
    from training.registry import Registry
    from training.split_record import recorded_samples

    catalog, held = held_out
    registry = tmp_path / "registry"
    for version in ("v1", "v2"):
        shutil.copytree(registry_root / "v1", registry / version)
    calibrate(registry / "v2", catalog, budget=float(WIDE_BUDGET))
    Registry(registry).activate("v1")
    unseen = [
        s.path for part in ("val", "test") for s in recorded_samples(registry / "v1", catalog, part)
    ]
    files = sorted(held.rglob("*.png")) + sorted(unseen)
    known = np.array([catalog in p.parents for p in files])
    new_model = np.array([p.parent.parent.name == sorted(held.iterdir())[-1].name for p in files])
    photos = [p.read_bytes() for p in files]
    pixels = np.stack([decode(data, size=32, max_pixels=10**6) for data in photos])
    offline = {
        v: [r["decision"] for r in Cascade.load(registry / v, version=v).predict(pixels)]
        for v in ("v1", "v2")
    }
    assert offline["v1"] != offline["v2"]

    iso = isolated_app(replace(own_db, registry=registry))
    own_workers.start(iso, "open", "v1")
    first = _upload(iso, photos)
    # v2 becomes active once the first chunk is done: the batch's later chunks still use v1
    while _status(iso, first)["counts"]["succeeded"] == 0:
        time.sleep(0.01)
    Registry(registry).activate("v2")
    assert _status(iso, first)["counts"]["succeeded"] < len(photos)  # overtaken mid-batch
    wait_until(lambda: _status(iso, first)["status"] == "completed", 120, "the first batch")
    # a later batch (the same photos, changed bytes so they are new uploads) gets v2
    second = _upload(iso, [data + uuid.uuid4().bytes for data in photos])
    wait_until(lambda: _status(iso, second)["status"] == "completed", 120, "the second batch")

    for batch_id, version in ((first, "v1"), (second, "v2")):
        assert _status(iso, batch_id)["model_version"] == version
        found = _decisions(iso, batch_id)
        assert {v for _, v in found.values()} == {version}
        served = [found[f"{i}.png"][0] for i in range(len(photos))]
        same = np.mean([a == b for a, b in zip(served, offline[version], strict=True)])
        assert same >= 0.95, (version, same)
    # v2's operating point: the unknown model is "unknown" clearly more often than known photos
    unknown = np.array(served) == "unknown"
    assert unknown[new_model].mean() >= unknown[known].mean() + 0.15, served
    flagged = np.array(served) != "sku"
    assert flagged[~known].mean() >= flagged[known].mean() + 0.1, served
