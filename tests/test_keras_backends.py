"""A version trained under TensorFlow serves under every other installed Keras backend (JAX,
PyTorch) through the worker's own loading path, without importing TensorFlow, and agrees with
TensorFlow: the same top-1 answers, probabilities within float32 rounding."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.images import decode
from shared.settings import Settings
from training.cascade import Cascade
from training.registry import Registry

BACKENDS = ("jax", "torch")
INSTALL = {"jax": "pip install -e '.[dev]' (jax)", "torch": "pip install torch==2.13.0"}
PHOTOS = 12
# float32 convolutions summed in another order: differences of ~1e-6 are rounding, not a bug
ATOL = 1e-4
# top two closer than this are a tie that rounding may break either way
TIE = 1e-5

# Run in a fresh interpreter under KERAS_BACKEND: TensorFlow is made unimportable first, so the
# serving path (worker tasks, model cache, cascade) must not need it.
PROBE = """
import importlib.abc, importlib.machinery, json, sys
from pathlib import Path

class NoTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    # a spec without origin, whose import fails: what PyTorch's probe for TensorFlow skips
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "tensorflow":
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        raise ImportError(f"{spec.name} is blocked in this probe")

    def exec_module(self, module):
        pass

sys.meta_path.insert(0, NoTensorFlow())
import numpy as np
import worker.tasks  # noqa: F401 - the worker's modules, as a pool process imports them
from training.backends import backend
from training.registry import Registry
from worker.model_cache import ModelCache

registry, version, pixels, out = sys.argv[1:]
cascade = ModelCache(Registry(Path(registry)), None).get(version)
images = np.load(pixels)
results = cascade.predict(images)
Path(out).write_text(json.dumps({
    "backend": backend(),
    "tensorflow": "tensorflow" in sys.modules,
    "p_model": cascade.model_probs(images).tolist(),
    "results": results,
}))
"""


@pytest.fixture(scope="module")
def reference(
    trained: str, settings: Settings, tiny_catalog: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The tiny version's answers under TensorFlow (this process), and the pixels they are for."""
    folder = Registry(settings.registry_dir).path(trained)
    cascade = Cascade.load(folder, version=trained)
    photos = sorted(tiny_catalog.rglob("*.png"))[::5][:PHOTOS]
    images = np.stack(
        [decode(p.read_bytes(), size=cascade.input_size, max_pixels=10**7) for p in photos]
    )
    pixels = tmp_path_factory.mktemp("backends") / "pixels.npy"
    np.save(pixels, images)
    return {
        "version": trained,
        "pixels": pixels,
        "p_model": cascade.model_probs(images),
        "results": cascade.predict(images),
    }


@pytest.mark.parametrize("name", BACKENDS)
def test_version_serves_alike_under_backend(
    name: str, reference: dict[str, Any], settings: Settings, tmp_path: Path
) -> None:
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed here ({INSTALL[name]})")
    out = tmp_path / "answers.json"
    env = {**os.environ, "KERAS_BACKEND": name, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    args = [str(settings.registry_dir), reference["version"], str(reference["pixels"]), str(out)]
    run = subprocess.run(
        [sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, run.stderr[-3000:]
    answers = json.loads(out.read_text())
    assert answers["backend"] == name
    assert answers["tensorflow"] is False
    p_model = np.array(answers["p_model"])
    np.testing.assert_allclose(p_model, reference["p_model"], atol=ATOL)
    _assert_same_answers(answers["results"], reference["results"])
    clear = _margins(reference["p_model"]) > TIE
    assert clear.sum() >= len(clear) // 2, "too many near-ties to compare top-1 answers"
    assert (p_model.argmax(1)[clear] == reference["p_model"].argmax(1)[clear]).all()


def _margins(probs: np.ndarray) -> np.ndarray:
    """Each row's top probability minus its second."""
    top2 = np.sort(probs, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def _assert_same_answers(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """The same model and SKU for every image whose top two candidates are not a tie, and the
    same confidences (the tiny model is unsure: its answers are close to uniform)."""
    assert len(got) == len(want)
    decided = 0
    for mine, theirs in zip(got, want, strict=True):
        assert mine["model"]["confidence"] == pytest.approx(theirs["model"]["confidence"], abs=ATOL)
        assert mine["sku"]["confidence"] == pytest.approx(theirs["sku"]["confidence"], abs=ATOL)
        confidences = [c["confidence"] for c in theirs["candidates"]] + [0.0]
        if confidences[0] - confidences[1] > TIE:
            decided += 1
            assert (mine["model"]["label"], mine["sku"]["label"]) == (
                theirs["model"]["label"],
                theirs["sku"]["label"],
            )
    assert decided >= len(want) // 2, "too many near-ties to compare top-1 answers"
