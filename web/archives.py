"""Reading images out of an uploaded zip or tar, safely: entry-count and size limits, zip bombs,
paths escaping the archive, links, nested archives — each a per-image error, never a crash."""

from __future__ import annotations

import tarfile
import zipfile
import zlib
from collections.abc import Iterator
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

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz", ".gz", ".7z", ".rar")
MAX_COMPRESSION_RATIO = 200  # real images barely compress; more than this is a bomb
SKIPPED_PREFIXES = ("__MACOSX/",)  # macOS resource forks: not user content


@dataclass(frozen=True)
class ArchiveLimits:
    """How much an archive may hold."""

    max_entries: int
    max_entry_bytes: int
    max_total_bytes: int


@dataclass(frozen=True)
class Entry:
    """One file of the archive: its bytes, or why it was refused."""

    ref: str
    data: bytes | None
    error: dict[str, str] | None = None


def _refused(ref: str, error: SkuaiError) -> Entry:
    return Entry(ref, None, error.to_dict())


def iter_archive(stream: IO[bytes], limits: ArchiveLimits) -> Iterator[Entry]:
    """Every file of a zip or tar (any compression), in archive order."""
    stream.seek(0)
    if zipfile.is_zipfile(stream):
        stream.seek(0)
        yield from _zip_entries(stream, limits)
        return
    stream.seek(0)
    try:
        archive = tarfile.open(fileobj=stream, mode="r:*")  # noqa: SIM115 - closed below
    except (tarfile.TarError, EOFError, OSError, zlib.error):
        raise UnsupportedMediaType("the archive is not a readable zip or tar file") from None
    with archive:
        yield from _tar_entries(archive, limits)


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


class _Budget:
    """Counts entries and expanded bytes against the limits of the whole archive."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.entries = 0
        self.bytes = 0

    def entry(self) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise PayloadTooLarge(f"the archive has more than {self.limits.max_entries} entries")

    def spend(self, size: int) -> None:
        self.bytes += size
        if self.bytes > self.limits.max_total_bytes:
            raise PayloadTooLarge(
                f"the archive expands to more than {self.limits.max_total_bytes} bytes"
            )


def _zip_entries(stream: IO[bytes], limits: ArchiveLimits) -> Iterator[Entry]:
    budget = _Budget(limits)
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


def _zip_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ArchiveLimits, budget: _Budget
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
    if len(data) > limits.max_entry_bytes:
        return _refused(name, PayloadTooLarge(f"over {limits.max_entry_bytes} bytes"))
    budget.spend(len(data))
    return Entry(name, data)


def _tar_entries(archive: tarfile.TarFile, limits: ArchiveLimits) -> Iterator[Entry]:
    budget = _Budget(limits)
    try:
        for member in archive:
            if member.isdir():
                continue
            budget.entry()
            yield _tar_entry(archive, member, limits, budget)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        yield _refused("(rest of archive)", CorruptEntry(f"the archive is truncated: {exc}"))


def _tar_entry(
    archive: tarfile.TarFile, member: tarfile.TarInfo, limits: ArchiveLimits, budget: _Budget
) -> Entry:
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
    data = handle.read(limits.max_entry_bytes + 1)
    budget.spend(len(data))
    return Entry(name, data)
