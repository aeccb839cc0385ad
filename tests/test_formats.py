"""Every accepted format — JPEG, PNG, WEBP, AVIF, HEIC/HEIF, GIF (first frame), TIFF (first page)
and BMP — decodes the same for serving and training, and is classified through the real API and
worker as a job, as batch files, as archive entries and as URLs. Anything else is a 415 naming the
accepted formats; a header declaring huge dimensions is refused in every format."""

from __future__ import annotations

import functools
import io
import threading
import zipfile
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from shared.errors import InvalidImage, UnsupportedMediaType
from shared.image_formats import ACCEPTED_NAMES
from shared.images import decode, sniff
from tests.image_files import SUFFIXES, declaring, encode, frames
from tests.support.batches import batch_results, wait_for_batch
from tests.support.http import http
from tests.support.images import sample_image

MAX = 10_000_000
RED = (200, 30, 30)
BLUE = (30, 30, 200)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GRAY = (90, 90, 90)


def _plain(mode: str = "RGB", colour: object = RED) -> Image.Image:
    return Image.new(mode, (48, 32), colour)


def _half_transparent() -> Image.Image:
    image = _plain("RGBA", (0, 0, 0, 0))
    image.paste((*RED, 255), (0, 0, 24, 32))  # left half red, right half transparent
    return image


# id: (the file, the format it is sniffed as, the colour at the centre after decoding)
VARIANTS: dict[str, tuple[Callable[[], bytes], str, tuple[int, int, int]]] = {
    "jpeg": (lambda: encode(_plain(), "JPEG"), "JPEG", RED),
    "jpeg-cmyk": (lambda: encode(_plain("CMYK", (0, 217, 217, 55)), "JPEG"), "JPEG", RED),
    "jpeg-gray": (lambda: encode(_plain("L", 90), "JPEG"), "JPEG", GRAY),
    "jpeg-mpo": (lambda: frames("MPO", _plain(), _plain(colour=BLUE)), "JPEG", RED),
    "png-16bit": (lambda: encode(_plain("I;16", 90 * 257), "PNG"), "PNG", GRAY),
    "png-palette": (lambda: encode(_plain().convert("P"), "PNG"), "PNG", RED),
    "webp": (lambda: encode(_plain(), "WEBP"), "WEBP", RED),
    "webp-lossless": (lambda: encode(_plain(), "WEBP", lossless=True), "WEBP", RED),
    "webp-animated": (lambda: frames("WEBP", _plain(), _plain(colour=BLUE)), "WEBP", RED),
    "avif": (lambda: encode(_plain(), "AVIF"), "AVIF", RED),
    "avif-gray": (lambda: encode(_plain("L", 90), "AVIF"), "AVIF", GRAY),
    "avif-animated": (lambda: frames("AVIF", _plain(), _plain(colour=BLUE)), "AVIF", RED),
    "heic": (lambda: encode(_plain(), "HEIF"), "HEIF", RED),
    "heic-gray": (lambda: encode(_plain("L", 90), "HEIF"), "HEIF", GRAY),
    "heic-16bit": (lambda: encode(_plain("I;16", 90 * 257), "HEIF"), "HEIF", GRAY),
    "heic-10bit": (lambda: encode(_plain(), "HEIF", save_to_12bit=True), "HEIF", RED),
    "heic-two-images": (lambda: frames("HEIF", _plain(), _plain(colour=BLUE)), "HEIF", RED),
    "gif": (lambda: encode(_plain(), "GIF"), "GIF", RED),
    "gif-animated": (lambda: frames("GIF", _plain(), _plain(colour=BLUE)), "GIF", RED),
    "tiff": (lambda: encode(_plain(), "TIFF"), "TIFF", RED),
    "tiff-lzw": (lambda: encode(_plain(), "TIFF", compression="tiff_lzw"), "TIFF", RED),
    "tiff-jpeg": (lambda: encode(_plain(), "TIFF", compression="jpeg"), "TIFF", RED),
    "tiff-16bit": (lambda: encode(_plain("I;16", 90 * 257), "TIFF"), "TIFF", GRAY),
    "tiff-cmyk": (lambda: encode(_plain("CMYK", (0, 217, 217, 55)), "TIFF"), "TIFF", RED),
    "tiff-1bit-fax": (lambda: encode(_plain("1", 0), "TIFF", compression="group4"), "TIFF", BLACK),
    "tiff-pages": (lambda: frames("TIFF", _plain(), _plain(colour=BLUE)), "TIFF", RED),
    "bmp": (lambda: encode(_plain(), "BMP"), "BMP", RED),
    "bmp-palette": (lambda: encode(_plain().convert("P"), "BMP"), "BMP", RED),
    "bmp-1bit": (lambda: encode(_plain("1", 0), "BMP"), "BMP", BLACK),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_format_decodes_to_its_first_frame(variant: str) -> None:
    make, fmt, colour = VARIANTS[variant]
    data = make()
    assert sniff(data, max_pixels=MAX) == fmt
    pixels = decode(data, size=32, max_pixels=MAX)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    assert np.abs(pixels[16, 16].astype(int) - colour).max() <= 12, pixels[16, 16]
    assert (pixels[2, 16] == 255).all()  # 48 x 32 padded to a square with white


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "AVIF", "HEIF", "GIF"])
def test_transparency_becomes_white(fmt: str) -> None:
    pixels = decode(encode(_half_transparent(), fmt), size=32, max_pixels=MAX)
    assert np.abs(pixels[16, 4].astype(int) - RED).max() <= 12
    assert (pixels[16, 28] >= 250).all()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "AVIF", "HEIF", "TIFF"])
def test_orientation_is_applied_in_every_format_that_carries_one(fmt: str) -> None:
    image = Image.new("RGB", (64, 32), "white")
    image.paste((255, 0, 0), (0, 0, 32, 32))  # red on the left half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display: red ends up on top
    pixels = decode(encode(image, fmt, exif=exif.tobytes()), size=64, max_pixels=MAX)
    assert pixels[8, 32, 0] > 200 and pixels[8, 32, 1] < 80, fmt
    assert pixels[56, 32, 1] > 200, fmt


def test_training_decodes_every_format_exactly_as_serving(tmp_path: Path) -> None:
    from training.pipeline import ImageSource

    source = ImageSource(32)
    for variant, (make, _, _) in VARIANTS.items():
        path = tmp_path / variant
        path.write_bytes(make())
        pixels, ok = source.decode(str(path).encode())
        assert ok, variant
        assert np.array_equal(pixels, decode(path.read_bytes(), size=32, max_pixels=MAX))
    assert not source.unreadable


def test_submit_picks_up_every_format_from_a_folder(tmp_path: Path) -> None:
    from skuai.submit import collect

    for fmt, suffix in SUFFIXES.items():
        (tmp_path / f"shoe{suffix.upper()}").write_bytes(encode(_plain(), fmt))
    (tmp_path / "notes.txt").write_text("not a photo")
    images, archives = collect([tmp_path])
    assert len(images) == len(SUFFIXES) and not archives


UNSUPPORTED: dict[str, tuple[Callable[[], bytes], str]] = {
    "ico": (lambda: encode(_plain(), "ICO"), "ICO images are not accepted"),
    "pcx": (lambda: encode(_plain(), "PCX"), "PCX images are not accepted"),
    "jpeg2000": (lambda: encode(_plain(), "JPEG2000"), "JPEG2000 images are not accepted"),
    "pdf": (lambda: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "not an image"),
    "text": (lambda: b"a shoe, honestly", "not an image in an accepted format"),
}


@pytest.mark.parametrize("kind", UNSUPPORTED)
def test_anything_else_is_unsupported_naming_the_accepted_formats(kind: str) -> None:
    make, fragment = UNSUPPORTED[kind]
    with pytest.raises(UnsupportedMediaType) as raised:
        sniff(make(), max_pixels=MAX)
    assert fragment in raised.value.message
    assert raised.value.message.endswith(f"send {ACCEPTED_NAMES}")
    assert raised.value.http_status == 415


@pytest.mark.parametrize("fmt", sorted(SUFFIXES))
def test_huge_declared_dimensions_are_refused_in_every_format(fmt: str) -> None:
    with pytest.raises(InvalidImage, match="too many pixels"):
        sniff(declaring(fmt, 16_000, 16_000), max_pixels=MAX)  # 256 Mpx: a decompression bomb
    with pytest.raises(InvalidImage, match="5000x5000 pixels; at most"):
        decode(declaring(fmt, 5000, 5000), size=32, max_pixels=MAX)


# --- End to end: the real API, Redis and worker ---------------------------------------------


@pytest.fixture(scope="module")
def photos(tiny_catalog: Path) -> dict[str, bytes]:
    """One catalog photo in every accepted format, by file name."""
    photo = Image.open(sample_image(tiny_catalog)).convert("RGB")
    return {f"shoe{suffix}": encode(photo, fmt) for fmt, suffix in SUFFIXES.items()}


def _refused() -> dict[str, bytes]:
    """Files every way of uploading must refuse, each with its own error."""
    return {
        "icon.ico": encode(_plain(), "ICO"),
        "notes.jpg": b"this text file only has an image's name",
        "bomb.heic": declaring("HEIF", 16_000, 16_000),
        "bomb.tiff": declaring("TIFF", 16_000, 16_000),
        "bomb.gif": declaring("GIF", 16_000, 16_000),
    }


def _check_refusal(ref: str, error: dict[str, str]) -> None:
    if ref.startswith("bomb"):
        assert error["code"] == "invalid_image" and "too many pixels" in error["message"], error
    else:
        assert error["code"] == "unsupported_media_type", error
        assert ACCEPTED_NAMES in error["message"], error


def _job(api_url: str, job_id: str) -> dict:
    return http.get(f"{api_url}/v1/jobs/{job_id}?wait=30", timeout=40).json()  # type: ignore[no-any-return]


def _same_prediction(a: dict, b: dict) -> bool:
    return a["sku"]["label"] == b["sku"]["label"] and a["sku"]["confidence"] == pytest.approx(
        b["sku"]["confidence"], abs=1e-4
    )


@pytest.mark.usefixtures("inference_worker")
def test_every_format_is_classified_as_a_job(
    api_url: str, photos: dict[str, bytes], tiny_catalog: Path, trained: str
) -> None:
    original = sample_image(tiny_catalog).read_bytes()
    ids = {}
    for name, data in {"original.png": original, **photos}.items():
        response = http.post(f"{api_url}/v1/jobs", files={"image": (name, data)}, timeout=10)
        assert response.status_code == 202, (name, response.text)
        ids[name] = response.json()["id"]
    jobs = {name: _job(api_url, job_id) for name, job_id in ids.items()}
    skus = {p.name for p in tiny_catalog.glob("*/*") if p.is_dir()}
    for name, job in jobs.items():
        assert job["status"] == "succeeded", (name, job)
        assert job["model_version"] == trained and job["result"]["sku"]["label"] in skus
    for lossless in ("shoe.png", "shoe.tiff", "shoe.bmp"):  # the very same pixels
        assert _same_prediction(jobs[lossless]["result"], jobs["original.png"]["result"])


@pytest.mark.usefixtures("inference_worker")
@pytest.mark.parametrize("name", list(_refused()))
def test_a_refused_single_image_says_why(api_url: str, name: str) -> None:
    response = http.post(
        f"{api_url}/v1/jobs", files={"image": (name, _refused()[name])}, timeout=10
    )
    assert response.status_code == (422 if name.startswith("bomb") else 415)
    _check_refusal(name, response.json()["error"])


def _completed_items(api_url: str, batch_id: str) -> list[dict]:
    assert wait_for_batch(api_url, batch_id)["status"] == "completed"
    return batch_results(api_url, batch_id)


def _check_batch(items: list[dict], photos: dict[str, bytes], ref: Callable[[str], str]) -> None:
    by_ref = {item["ref"]: item for item in items}
    assert len(by_ref) == len(photos) + len(_refused())
    for name in photos:
        assert by_ref[ref(name)]["status"] == "succeeded", by_ref[ref(name)]
    for name in _refused():
        item = by_ref[ref(name)]
        assert item["status"] == "failed"
        _check_refusal(name, item["error"])


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(f"photos/{name}", data)
    return buffer.getvalue()


@pytest.mark.usefixtures("inference_worker")
@pytest.mark.parametrize("upload", ["files", "archive"])
def test_every_format_in_a_batch(api_url: str, photos: dict[str, bytes], upload: str) -> None:
    files = {**photos, **_refused()}
    if upload == "files":
        form = [("images", (name, data)) for name, data in files.items()]
        ref: Callable[[str], str] = lambda name: name  # noqa: E731
    else:
        form = [("archive", ("photos.zip", _zip(files)))]
        ref = lambda name: f"photos/{name}"  # noqa: E731
    response = http.post(f"{api_url}/v1/batches", files=form, timeout=30)
    assert response.status_code == 202, response.text
    _check_batch(_completed_items(api_url, response.json()["id"]), photos, ref)


@pytest.fixture()
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server serving a folder (the tests allow private URLs): its URL and folder."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()


@pytest.mark.usefixtures("inference_worker")
def test_every_format_by_url(
    api_url: str, photos: dict[str, bytes], file_server: tuple[str, Path]
) -> None:
    url, folder = file_server
    files = {**photos, **_refused()}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    body = {"images": [{"url": f"{url}/{name}", "ref": name} for name in files]}
    response = http.post(f"{api_url}/v1/batches", json=body, timeout=30)
    assert response.status_code == 202, response.text
    _check_batch(_completed_items(api_url, response.json()["id"]), photos, lambda name: name)


def test_the_openapi_document_names_the_formats(api_url: str) -> None:
    spec = requests.get(f"{api_url}/openapi.json", timeout=10).json()
    form = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    schema = form["schema"]
    if "$ref" in schema:  # "#/components/schemas/JobForm"
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert ACCEPTED_NAMES in schema["properties"]["image"]["description"]
