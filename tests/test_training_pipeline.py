"""The training pipeline beyond the basics: streaming decode with class weights, occlusion,
pretrained weights from a local file (frozen, then fine-tuned), unreadable images, the flat
comparison and what the report holds, and evaluation on a folder the version never saw."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from shared.errors import ConfigError, DatasetError
from tests.support.processes import run_skuai
from training.config import TrainConfig
from training.dataset import scan, split
from training.registry import Registry

TINY_TRAIN = {"input_size": 32, "batch_size": 16, "seed": 0, "precision": "fp32"}


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.synth import synthesize

    out = tmp_path_factory.mktemp("imbalanced") / "data"
    synthesize(out, models=2, skus_per_model=2, images_per_sku=40, size=32, seed=5, imbalance=8)
    return out


def _weights_by_class(data: Path, balance: str) -> dict[int, float]:
    from training.fit import class_weights
    from training.pipeline import ImageSource, stream

    labels, samples = scan(data)
    parts = split(samples, seed=0)
    config = TrainConfig(**TINY_TRAIN, weights="none", augment=False, balance=balance)
    targets = np.array([labels.sku_index[s.sku] for s in parts.train])
    weights = class_weights(targets, len(labels.skus)) if balance == "weights" else None
    totals: Counter[int] = Counter()
    batches = stream(
        parts.train,
        labels,
        ImageSource(32),
        target="sku",
        config=config,
        training=True,
        class_weights=weights,
    )
    for images, sku, weight in batches:
        assert images.shape[1:] == (32, 32, 3)
        for s, w in zip(sku.numpy(), weight.numpy(), strict=True):
            totals[int(s)] += float(w)
    return dict(totals)


def test_class_weights_balance_an_imbalanced_catalog(imbalanced: Path) -> None:
    counts = Counter(p.parent.name for p in imbalanced.rglob("*.png"))
    assert max(counts.values()) / min(counts.values()) >= 5  # the catalog is imbalanced
    plain = _weights_by_class(imbalanced, "none")
    balanced = _weights_by_class(imbalanced, "weights")
    # Without weights each SKU counts as often as it has images; with them, every SKU's images
    # add up to the same total, so rare SKUs pull on the loss as hard as common ones.
    assert max(plain.values()) / min(plain.values()) >= 5
    assert max(balanced.values()) == pytest.approx(min(balanced.values()), rel=1e-4)
    assert sum(balanced.values()) == pytest.approx(sum(plain.values()), rel=1e-4)


def test_occlusion_is_random_inside_a_tf_data_pipeline() -> None:
    """In graph mode (as in Dataset.map) the patch's place, size, colour and whether an image
    gets one must all vary independently."""
    import tensorflow as tf

    from training.augment import occlude

    data = tf.data.Dataset.from_tensors(tf.fill((200, 32, 32, 3), 100.0))
    (batch,) = list(data.map(lambda x: occlude(x, rate=0.5, seed=3)).as_numpy_iterator())
    hit = np.any(batch != 100.0, axis=-1)
    touched = hit.any(axis=(1, 2))
    assert 0.35 < touched.mean() < 0.65
    rows = np.array([np.nonzero(h.any(axis=1))[0].mean() for h in hit[touched]])
    cols = np.array([np.nonzero(h.any(axis=0))[0].mean() for h in hit[touched]])
    assert abs(np.corrcoef(rows, cols)[0, 1]) < 0.4
    assert rows.std() > 5 and cols.std() > 5  # patches land all over the image


def test_occlusion_paints_one_solid_patch() -> None:
    import tensorflow as tf

    from training.augment import occlude

    images = tf.fill((8, 32, 32, 3), 100.0)
    untouched = occlude(images, rate=0.0, seed=1)
    assert np.array_equal(untouched.numpy(), images.numpy())
    painted = occlude(images, rate=1.0, size=(0.1, 0.2), seed=1).numpy()
    for image in painted:
        changed = np.any(image != 100.0, axis=-1)
        rows, cols = np.nonzero(changed)
        assert changed.any() and changed.mean() < 0.2
        # One axis-aligned rectangle, filled with one colour.
        assert changed[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
        assert len(np.unique(image[changed], axis=0)) == 1


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VGG16 notop weights file written here, as an offline machine would have one."""
    import keras

    path = tmp_path_factory.mktemp("weights") / "vgg16_notop.weights.h5"
    keras.utils.set_random_seed(11)
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(
        path
    )
    return path


@pytest.fixture(scope="module")
def pretrained_run(
    tiny_catalog: Path, weights_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    """One full-width run from the weights file, with the flat comparison, on a copy of the tiny
    catalog holding two files that cannot be read."""
    from training.train import train

    data = tmp_path_factory.mktemp("broken") / "data"
    shutil.copytree(tiny_catalog, data)
    sku_dirs = sorted(p for p in data.glob("*/*") if p.is_dir())
    (sku_dirs[0] / "zz-not-an-image.png").write_bytes(b"this is not a png")
    good = sorted(sku_dirs[1].glob("*.png"))[0].read_bytes()
    (sku_dirs[1] / "zz-truncated.png").write_bytes(good[: len(good) // 3])
    config = TrainConfig(**TINY_TRAIN, epochs=2, weights=str(weights_file), compare_flat=True)
    registry = Registry(tmp_path_factory.mktemp("registry"))
    outcome = train(data, registry, config, force=True)  # the two files are left out
    return outcome.path, outcome.metrics


def test_weights_file_loads_then_fine_tunes(pretrained_run: tuple[Path, dict], weights_file: Path):
    import keras

    folder, _ = pretrained_run
    reference = keras.applications.VGG16(
        include_top=False, weights=str(weights_file), input_shape=(32, 32, 3)
    )
    stage1 = keras.saving.load_model(folder / "stage1.keras")
    for name in ("block1_conv1", "block5_conv3"):
        loaded = reference.get_layer(name).get_weights()[0]
        trained = stage1.get_layer(name).get_weights()[0]
        # Started from the file (a fresh init would be far off), then fine-tuned at a low rate.
        assert np.abs(trained - loaded).max() < 0.01, name
        assert not np.array_equal(trained, loaded), name
    assert json.loads((folder / "config.json").read_text())["weights"] == str(weights_file)


def test_unreadable_images_are_skipped_and_counted(pretrained_run: tuple[Path, dict]) -> None:
    folder, metrics = pretrained_run
    assert metrics["skipped_images"] == 2
    assert "Unreadable images skipped: 2." in (folder / "report.md").read_text()


def test_report_holds_every_measure(pretrained_run: tuple[Path, dict]) -> None:
    folder, metrics = pretrained_run
    report = (folder / "report.md").read_text()
    for heading in (
        "## Test split",
        "## Training time",
        "## Cascade against a flat single-stage classifier",
        "## Stage-1 confusion matrix",
        "## Lowest SKU recall",
    ):
        assert heading in report, heading
    for row in (
        "stage 1 model top-1",
        "stage 1 model top-5",
        "stage 2 SKU top-1 (true model)",
        "end-to-end SKU top-1",
        "end-to-end SKU top-5",
        "expected calibration error",
        "errors: wrong model",
        "Peak memory (RSS)",
    ):
        assert row in report, row
    assert (folder / "confusion.png").read_bytes().startswith(b"\x89PNG")
    assert set(metrics["training"]) >= {"stage 1", "stage 2", "flat", "peak_rss_mib"}
    assert metrics["training"]["stage 1"]["images_per_second"] > 0
    flat, cascade = metrics["flat"], metrics["end_to_end"]
    assert flat["width"] == 1.0 and flat["test_images"] == metrics["test_images"]
    for measures in (flat, cascade):
        assert 0 <= measures["sku_top1"] <= measures["sku_top5"] <= 1
        errors = measures["errors"]["wrong_model"] + measures["errors"]["wrong_sku_right_model"]
        assert errors == round((1 - measures["sku_top1"]) * metrics["test_images"])
        assert set(measures["sku_top1_by_model"]) == set(
            json.loads((folder / "labels.json").read_text())["models"]
        )
    assert metrics["stage1"]["per_class"] and cascade["per_sku"]
    assert 0 <= cascade["expected_calibration_error"] <= 1


class _CountingEvents:
    """Training events that count the progress each phase reports."""

    def __init__(self) -> None:
        self.advanced: Counter[str] = Counter()

    def phase(self, name: str, total: int | None = None) -> Any:
        return lambda n: self.advanced.update({name: n})


def test_all_unreadable_training_images_is_a_clear_error(tmp_path: Path) -> None:
    """Files that passed the data check but cannot be read by the time training decodes them
    (replaced on disk in between) stop training after one epoch with a clear error."""
    from training.data_check import check_dataset
    from training.train import train

    for j, sku in enumerate(("m1/s1", "m2/s2")):
        (tmp_path / "data" / sku).mkdir(parents=True)
        for i in range(5):
            pixels = np.random.default_rng([j, i]).integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / sku / f"{i}.png")  # no copies
    report = check_dataset(tmp_path / "data", input_size=32)
    assert not report.errors()
    for path in (tmp_path / "data").rglob("*.png"):
        path.write_bytes(b"junk")
    config = TrainConfig(**{**TINY_TRAIN, "batch_size": 4}, epochs=5, width=0.0625, weights="none")
    registry = Registry(tmp_path / "registry")
    events = _CountingEvents()
    with pytest.raises(DatasetError, match="none of the 8 training images could be read"):
        train(tmp_path / "data", registry, config, events=events, check=report)
    assert registry.versions() == []  # the incomplete version was removed
    # Stopped after the first epoch (2 batches of 4), not after all five.
    (stage1,) = [n for name, n in events.advanced.items() if name.startswith("training stage 1")]
    assert stage1 == 2


def test_weights_that_do_not_fit_are_clear_errors(weights_file: Path, tmp_path: Path) -> None:
    from training.weights import copy_trunk_weights, load_reference

    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(ConfigError, match="not a VGG16 weights file"):
        load_reference(str(junk), input_size=32)
    from training.architecture import build_stage1

    narrow = build_stage1(3, input_size=32, width=0.25)
    with pytest.raises(ConfigError, match="need full width"):
        copy_trunk_weights(load_reference(str(weights_file), input_size=32), narrow)


def test_model_without_skus_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "data" / "lonely-model").mkdir(parents=True)
    out = run_skuai("train", str(tmp_path / "data"), "--registry", str(tmp_path / "r"))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()  # the data check's summary, then one error line
    assert "error model 'lonely-model' has no SKU folders" in lines[1]
    assert lines[-1].startswith(f"error: {tmp_path / 'data'} has 1 error")
    assert "Traceback" not in out.stderr


def test_evaluate_a_version_on_a_folder_it_never_saw(
    trained: str, service_env: dict[str, str], tiny_catalog: Path, tmp_path: Path
) -> None:
    from training.synth import synthesize

    hard = tmp_path / "hard"
    synthesize(
        hard, models=3, skus_per_model=2, images_per_sku=4, size=32, seed=3, variation="hard"
    )
    (hard / "catalog.json").unlink()
    out = run_skuai("models", "evaluate", trained, str(hard), "--json", env=service_env)
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout)
    assert metrics["test_images"] == 24 and metrics["skipped_images"] == 0
    assert 0 <= metrics["end_to_end"]["sku_top1"] <= 1
    other = tmp_path / "other"
    synthesize(other, models=2, skus_per_model=1, images_per_sku=1, size=32, seed=99)
    out = run_skuai("models", "evaluate", trained, str(other), env=service_env)
    assert out.returncode == 1
    assert "does not know" in out.stderr and len(out.stderr.strip().splitlines()) == 1
