"""Reading images out of an uploaded zip or tar, safely: entry-count and size limits, zip bombs,
paths escaping the archive, links, nested archives — each a per-image error, never a crash.
Unpacking is charged to the archive's budget (web/archive_budget.py), skipped members included."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

from shared.errors import (
    CorruptEntry,
    NestedArchive,
    PayloadTooLarge,
    SkuaiError,
    UnsafePath,
    UnsupportedEntry,
    UnsupportedMediaType,
    ZipBomb,
)
from web.archive_budget import (
    MAX_COMPRESSION_RATIO,
    ArchiveBudget,
    ArchiveLimits,
    MeteredReader,
    Readable,
    UnpackClock,
)

__all__ = ["ArchiveLimits", "Entry", "UnpackClock", "iter_archive", "unsafe_reason"]

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz", ".gz", ".7z", ".rar")
SKIPPED_PREFIXES = ("__MACOSX/",)  # macOS resource forks: not user content
ZIP_MEMBER_SIGNATURE = b"PK\x01\x02"  # starts each entry of a zip's central directory
SCAN_BLOCK = 1024 * 1024
# Tar compressions by their magic bytes; tarfile's own "r:*" would seek through a skipped member
# inside the decompressor, where no byte of it can be counted.
DECOMPRESSORS: tuple[tuple[bytes, Callable[[IO[bytes]], Readable]], ...] = (
    (b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw)),
    (b"BZh", bz2.BZ2File),
    (b"\xfd7zXZ\x00", lzma.LZMAFile),
)
CORRUPT = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)
# tarfile reads a pax or GNU long-name header whole into memory; real ones are a few hundred bytes.
EXTENDED_HEADERS = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
MAX_EXTENDED_HEADER = 1024 * 1024


class _BoundedTarInfo(tarfile.TarInfo):
    """A tar header that refuses an extended header too large to read into memory."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> _BoundedTarInfo:
        """The header in `buf` (every header of the archive passes here)."""
        info = super().frombuf(buf, encoding, errors)
        if info.type in EXTENDED_HEADERS and info.size > MAX_EXTENDED_HEADER:
            raise PayloadTooLarge(
                f"the archive has an extended header of {info.size} bytes; "
                f"at most {MAX_EXTENDED_HEADER} are read"
            )
        return info


@dataclass(frozen=True)
class Entry:
    """One file of the archive: its bytes, or why it was refused."""

    ref: str
    data: bytes | None
    error: dict[str, str] | None = None


def _refused(ref: str, error: SkuaiError) -> Entry:
    return Entry(ref, None, error.to_dict())


def iter_archive(
    stream: IO[bytes], limits: ArchiveLimits, clock: UnpackClock | None = None
) -> Iterator[Entry]:
    """Every file of a zip or tar (any compression), in archive order; 413 as soon as the
    archive lists, expands or takes more than its limits allow. Pass one `clock` to all the
    archives of a request to bound their time together."""
    clock = clock if clock is not None else UnpackClock(limits.max_seconds)
    budget = ArchiveBudget(limits, stream.seek(0, io.SEEK_END), clock)
    stream.seek(0)
    if zipfile.is_zipfile(stream):
        stream.seek(0)
        yield from clock.timed(_zip_entries(stream, limits, budget))
    else:
        stream.seek(0)
        yield from clock.timed(_tar_entries(stream, limits, budget))


def unsafe_reason(name: str) -> str | None:
    """Why an entry name may not be used as a ref (escaping paths), or None when it is fine."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        return "an absolute path"
    if ".." in path.parts:
        return "a path escaping the archive"
    return None


def _check_name(name: str) -> Entry | None:
    reason = unsafe_reason(name)
    if reason is not None:
        return _refused(name, UnsafePath(f"{name!r} is {reason}; entry skipped"))
    if name.lower().endswith(ARCHIVE_SUFFIXES):
        return _refused(name, NestedArchive("archives inside archives are not opened"))
    return None


def _zip_entries(
    stream: IO[bytes], limits: ArchiveLimits, budget: ArchiveBudget
) -> Iterator[Entry]:
    # zipfile parses the whole central directory on open: count its entries first.
    _count_zip_members(stream, budget)
    stream.seek(0)
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError):
        raise UnsupportedMediaType("the zip archive is corrupt") from None
    with archive:
        for info in archive.infolist():
            if info.is_dir() or info.filename.startswith(SKIPPED_PREFIXES):
                continue
            budget.entry()
            yield _zip_entry(archive, info, limits, budget)


def _count_zip_members(stream: IO[bytes], budget: ArchiveBudget) -> None:
    """Charge the zip's central directory entries, counted by their signature (a lying entry
    count in the end record would not stop zipfile reading them all)."""
    tail = b""
    while block := stream.read(SCAN_BLOCK):
        window = tail + block
        budget.member(window.count(ZIP_MEMBER_SIGNATURE))
        tail = window[-(len(ZIP_MEMBER_SIGNATURE) - 1) :]  # too short to hold a whole signature


def _zip_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ArchiveLimits, budget: ArchiveBudget
) -> Entry:
    name = info.filename
    if (refused := _check_name(name)) is not None:
        return refused
    if info.file_size > limits.max_entry_bytes:
        return _refused(name, PayloadTooLarge(f"over {limits.max_entry_bytes} bytes"))
    if info.compress_size and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO:
        return _refused(name, ZipBomb("compression ratio too high (zip bomb?)"))
    try:
        with archive.open(info) as member:
            data = member.read(limits.max_entry_bytes + 1)  # never trust the declared size
    except (zipfile.BadZipFile, zlib.error, RuntimeError, OSError, NotImplementedError) as exc:
        return _refused(name, CorruptEntry(f"cannot be extracted: {exc}"))
    budget.expand(len(data))
    if len(data) > limits.max_entry_bytes:
        return _refused(name, PayloadTooLarge(f"over {limits.max_entry_bytes} bytes"))
    return Entry(name, data)


def _tar_entries(
    stream: IO[bytes], limits: ArchiveLimits, budget: ArchiveBudget
) -> Iterator[Entry]:
    with _open_tar(stream, budget) as archive:
        try:
            for member in archive:
                budget.member()
                if member.isdir():
                    continue
                budget.entry()
                yield _tar_entry(archive, member, limits)
        except CORRUPT as exc:
            yield _refused("(rest of archive)", CorruptEntry(f"the archive is truncated: {exc}"))


def _open_tar(stream: IO[bytes], budget: ArchiveBudget) -> tarfile.TarFile:
    """The tar, read front to back ("r|") through a MeteredReader: skipping a member inflates
    it, so every skipped byte is counted and timed like a read one."""
    magic = stream.read(8)
    stream.seek(0)
    inflate = next((open_ for prefix, open_ in DECOMPRESSORS if magic.startswith(prefix)), None)
    raw: Readable = inflate(stream) if inflate is not None else stream
    try:
        return tarfile.open(fileobj=MeteredReader(raw, budget), mode="r|", tarinfo=_BoundedTarInfo)
    except CORRUPT:
        raise UnsupportedMediaType("the archive is not a readable zip or tar file") from None


def _tar_entry(archive: tarfile.TarFile, member: tarfile.TarInfo, limits: ArchiveLimits) -> Entry:
    name = member.name
    if (refused := _check_name(name)) is not None:
        return refused
    if not member.isfile():
        return _refused(name, UnsupportedEntry("links and special files are not read"))
    if member.size > limits.max_entry_bytes:
        return _refused(name, PayloadTooLarge(f"over {limits.max_entry_bytes} bytes"))
    handle = archive.extractfile(member)
    if handle is None:
        return _refused(name, UnsupportedEntry("cannot be read"))
    return Entry(name, handle.read(limits.max_entry_bytes + 1))
