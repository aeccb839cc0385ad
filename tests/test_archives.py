"""Reading archives safely: every hostile entry gets its own error, nothing escapes or explodes."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from shared.errors import PayloadTooLarge, UnsupportedMediaType
from web.archives import ArchiveLimits, iter_archive, unsafe_reason

LIMITS = ArchiveLimits(max_entries=20, max_entry_bytes=1_000_000, max_total_bytes=3_000_000)


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def _errors(stream: io.BytesIO, limits: ArchiveLimits = LIMITS) -> dict[str, str | None]:
    return {e.ref: (e.error or {}).get("code") for e in iter_archive(stream, limits)}


def test_zip_with_nested_folders_and_hostile_entries() -> None:
    stream = _zip(
        {
            "a/b/shoe.png": b"png-bytes",
            "../escape.png": b"x",
            "/etc/passwd": b"x",
            "inner.zip": b"PK",
            "__MACOSX/a/._shoe.png": b"junk",
            "notes.txt": b"hello",
        }
    )
    assert _errors(stream) == {
        "a/b/shoe.png": None,
        "../escape.png": "unsafe_path",
        "/etc/passwd": "unsafe_path",
        "inner.zip": "nested_archive",
        "notes.txt": None,  # read here; refused later as "not an image" like any upload
    }


def test_zip_bomb_entry_is_refused_without_inflating_it() -> None:
    stream = _zip({"bomb.png": b"\0" * 50_000_000, "ok.png": b"x"}, zipfile.ZIP_DEFLATED)
    assert _errors(stream, ArchiveLimits(20, 100_000_000, 200_000_000)) == {
        "bomb.png": "zip_bomb",
        "ok.png": None,
    }


def test_entry_over_the_image_limit() -> None:
    assert _errors(_zip({"big.png": b"x" * 2_000_000}))["big.png"] == "payload_too_large"


def test_too_many_entries_or_bytes_refuse_the_whole_archive() -> None:
    with pytest.raises(PayloadTooLarge, match="more than 20 entries"):
        list(iter_archive(_zip({f"{i}.png": b"x" for i in range(21)}), LIMITS))
    with pytest.raises(PayloadTooLarge, match="expands to more than"):
        list(iter_archive(_zip({f"{i}.png": b"x" * 900_000 for i in range(4)}), LIMITS))


def test_tar_with_links_and_compression() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("shoes/one.png")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"abc"))
        link = tarfile.TarInfo("shoes/link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
        escape = tarfile.TarInfo("../../x.png")
        escape.size = 1
        archive.addfile(escape, io.BytesIO(b"x"))
    buffer.seek(0)
    assert _errors(buffer) == {
        "shoes/one.png": None,
        "shoes/link.png": "unsupported_entry",
        "../../x.png": "unsafe_path",
    }


def test_truncated_tar_reports_the_rest_as_corrupt() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("one.png")
        info.size = 5000
        archive.addfile(info, io.BytesIO(b"a" * 5000))
    truncated = io.BytesIO(buffer.getvalue()[:3000])
    codes = list(_errors(truncated).values())
    assert codes[-1] == "corrupt_entry"


def test_not_an_archive() -> None:
    with pytest.raises(UnsupportedMediaType):
        list(iter_archive(io.BytesIO(b"just some bytes, not an archive" * 40), LIMITS))


@pytest.mark.parametrize(
    ("name", "unsafe"),
    [
        ("a/b.png", False),
        ("../b.png", True),
        ("a/../../b.png", True),
        ("/abs.png", True),
        ("C:\\\\x.png", True),
        ("a\\\\..\\\\..\\\\b.png", True),
        ("..png", False),
    ],
)
def test_unsafe_names(name: str, unsafe: bool) -> None:
    assert (unsafe_reason(name) is not None) is unsafe
