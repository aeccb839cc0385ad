"""The corruption suite: deterministic by seed, each degradation within its stated bounds, odd
inputs handled; and `skuai models evaluate --corruptions` end to end on the session's model."""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from shared.errors import InvalidImage
from tests.support.processes import run_skuai
from training import corruptions as c
from training.robustness import degrade_file

DRAWS = 200  # parameter draws checked per corruption


def _photo(size: int = 64) -> Image.Image:
    """A shoe-like test photo: a coloured, textured bar on a light backdrop."""
    rng = np.random.default_rng(0)
    image = Image.new("RGB", (size, size), (235, 235, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((size // 8, size * 3 // 8, size * 7 // 8, size * 5 // 8), fill=(40, 90, 200))
    draw.rectangle((size // 4, size // 2, size * 3 // 4, size * 5 // 8), fill=(200, 60, 40))
    pixels = np.asarray(image).astype(np.int16) + rng.integers(-6, 7, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _grey(value: int = 120, size: int = 48) -> Image.Image:
    """Mid-grey with a gentle ramp: no clipping under any brightness or contrast factor."""
    ramp = np.linspace(value - 30, value + 30, size)
    return Image.fromarray(np.repeat(np.tile(ramp, (size, 1))[..., None], 3, 2).astype(np.uint8))


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


@pytest.mark.parametrize("name", c.CORRUPTIONS)
def test_same_seed_same_bytes_other_seed_other_bytes(name: str) -> None:
    photo = _photo()
    first = [c.corrupt(photo, name, seed=11, index=i).tobytes() for i in range(4)]
    again = [c.corrupt(photo, name, seed=11, index=i).tobytes() for i in (0, 1, 2, 3)]
    assert first == again
    assert first[0] != c.corrupt(photo, name, seed=12, index=0).tobytes()
    # each photo has its own draw (JPEG has 41 qualities, so two of four may share one)
    assert len(set(first)) >= 3
    assert all(img != photo.tobytes() for img in first)  # every corruption changes the photo


def test_parameters_stay_within_the_stated_bounds() -> None:
    rng = np.random.default_rng(5)
    for _ in range(DRAWS):
        assert c.JPEG_QUALITY[0] <= c.draw("jpeg", rng)["quality"] <= c.JPEG_QUALITY[1]
        assert c.MAX_ROTATION / 2 <= abs(c.draw("rotate", rng)["degrees"]) <= c.MAX_ROTATION
        for name in ("brightness", "contrast"):
            assert c.MAX_LIGHTING / 2 <= abs(c.draw(name, rng)["factor"] - 1) <= c.MAX_LIGHTING
        assert c.MAX_CROP / 2 <= c.draw("crop", rng)["cut"] <= c.MAX_CROP
        assert c.BLUR_RADIUS[0] <= c.draw("blur", rng)["radius"] <= c.BLUR_RADIUS[1]
        gains = c.draw("colour_cast", rng)["gains"]
        assert all(c.MAX_CAST / 2 <= abs(g - 1) <= c.MAX_CAST for g in gains)
        steps = c.draw("mixed", rng)["steps"]
        assert len(steps) == c.MIXED_STEPS + 1 and steps[-1][0] == "jpeg"
        assert len({s for s, _ in steps}) == len(steps)


def test_brightness_contrast_and_cast_change_the_pixels_by_their_factors() -> None:
    grey, rng = _grey(), np.random.default_rng(1)
    for _ in range(20):
        p = c.draw("brightness", rng)
        ratio = _pixels(c.apply(grey, "brightness", p)).mean() / _pixels(grey).mean()
        assert ratio == pytest.approx(p["factor"], abs=0.01)
        p = c.draw("contrast", rng)
        ratio = _pixels(c.apply(grey, "contrast", p)).std() / _pixels(grey).std()
        assert ratio == pytest.approx(p["factor"], abs=0.03)
        p = c.draw("colour_cast", rng)
        cast = _pixels(c.apply(grey, "colour_cast", p)).mean(axis=(0, 1)) / _pixels(grey).mean()
        assert cast == pytest.approx(p["gains"], abs=0.01)


def test_crop_keeps_a_window_of_at_least_ninety_percent_of_each_side() -> None:
    photo, rng = _photo(100), np.random.default_rng(2)
    for _ in range(20):
        p = c.draw("crop", rng)
        out = c.apply(photo, "crop", p)
        assert 90 <= out.width < 100 and out.height == out.width
        window = _pixels(photo)
        found = [
            (x, y)
            for y in range(100 - out.height + 1)
            for x in range(100 - out.width + 1)
            if np.array_equal(window[y : y + out.height, x : x + out.width], _pixels(out))
        ]
        assert found  # the crop is a piece of the photo, not a resampled copy


def test_rotation_turns_the_photo_by_its_angle() -> None:
    image = Image.new("RGB", (96, 96), (255, 255, 255))
    ImageDraw.Draw(image).rectangle((8, 44, 88, 52), fill=(0, 0, 0))  # a horizontal bar
    rng = np.random.default_rng(3)
    for _ in range(10):
        p = c.draw("rotate", rng)
        dark = _pixels(c.apply(image, "rotate", p)).mean(axis=2) < 128
        ys, xs = np.nonzero(dark)
        cov = np.cov(xs, -ys)  # y points down in images; the angle is counter-clockwise
        angle = math.degrees(0.5 * math.atan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1]))
        assert angle == pytest.approx(p["degrees"], abs=1.0)
        assert dark.sum() == pytest.approx((~(_pixels(image).mean(axis=2) >= 128)).sum(), rel=0.1)


def test_blur_softens_edges_and_jpeg_compresses_within_its_qualities() -> None:
    photo, rng = _photo(), np.random.default_rng(4)

    def sharpness(image: Image.Image) -> float:
        return float(np.abs(np.diff(_pixels(image), axis=1)).mean())

    for _ in range(10):
        assert sharpness(c.apply(photo, "blur", c.draw("blur", rng))) < sharpness(photo)
    low, high = c.JPEG_QUALITY
    error = lambda q: np.abs(_pixels(c.apply(photo, "jpeg", {"quality": q})) - _pixels(photo))  # noqa: E731
    assert error(low).mean() > error(high).mean() > error(95).mean()


@pytest.mark.parametrize(
    ("mode", "size"),
    [("RGB", (1, 1)), ("L", (1, 7)), ("RGBA", (9, 1)), ("P", (3, 2)), ("I;16", (5, 5))],
)
def test_tiny_and_odd_images_are_corrupted_without_errors(mode: str, size: tuple[int, int]) -> None:
    image = Image.new(mode, size)
    for name in c.CORRUPTIONS:
        out = c.corrupt(image, name, seed=0, index=0)
        assert out.mode == "RGB" and out.width >= 1 and out.height >= 1


def test_unknown_corruption_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        c.corrupt(_photo(), "fog", seed=0, index=0)


def test_a_file_is_degraded_near_its_own_size_then_decoded_as_serving_decodes() -> None:
    buffer = io.BytesIO()
    _photo(200).save(buffer, "WEBP", lossless=True)
    data = buffer.getvalue()
    out = degrade_file(data, "mixed", seed=0, index=5, size=32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert np.array_equal(out, degrade_file(data, "mixed", seed=0, index=5, size=32))
    with pytest.raises(InvalidImage):
        degrade_file(b"not an image", "jpeg", seed=0, index=0, size=32)


def _evaluate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_skuai("models", "evaluate", *args, env=env)


def test_evaluate_with_corruptions_reports_each_and_the_ratio_to_clean(
    trained: str, service_env: dict[str, str], tiny_catalog: Path
) -> None:
    out = _evaluate(service_env, trained, str(tiny_catalog), "--test-split", "--corruptions")
    assert out.returncode == 0, out.stderr
    for row in (*c.CORRUPTIONS, "clean", "overall"):
        assert f"│ {row} " in out.stderr  # the table goes with the other results, to stderr
    out = _evaluate(
        service_env, trained, str(tiny_catalog), "--test-split", "--corruptions", "--json"
    )
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout)
    result = metrics["corruptions"]
    # the test split: one photo in ten of each SKU (6 SKUs x 10 photos)
    assert metrics["test_images"] == result["images"] == 6
    assert result["clean"]["sku_top1"] == metrics["end_to_end"]["sku_top1"]
    assert set(result["corruptions"]) == set(c.CORRUPTIONS)
    for measure in ("model_top1", "sku_top1"):
        scores = [r[measure] for r in result["corruptions"].values()]
        assert result["overall"][measure] == pytest.approx(np.mean(scores))
        clean = result["clean"][measure]
        if clean:
            assert result["overall"][f"{measure}_ratio"] == pytest.approx(
                result["overall"][measure] / clean
            )


def test_evaluate_errors_are_one_line(
    trained: str, service_env: dict[str, str], tiny_catalog: Path, tmp_path: Path
) -> None:
    missing_version = _evaluate(service_env, "v999", str(tiny_catalog), "--corruptions")
    missing_folder = _evaluate(service_env, trained, str(tmp_path / "nope"), "--corruptions")
    shutil.copytree(tiny_catalog, tmp_path / "copy")  # the same photos, another folder
    other_folder = _evaluate(service_env, trained, str(tmp_path / "copy"), "--test-split")
    for out, words in [
        (missing_version, "v999"),
        (missing_folder, "does not exist"),
        (other_folder, "its test split is only defined there"),
    ]:
        assert out.returncode == 1
        assert len(out.stderr.strip().splitlines()) == 1 and words in out.stderr, out.stderr
