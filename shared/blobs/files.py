"""The file backend: one file per blob under a folder on this host (or on a volume every process
mounts), the default under SKUAI_HOME/blobs.

A blob's file is `<root>/<h[:2]>/<h[2:4]>/<key, '/' as %2F>` where h is the key's SHA-256: 65,536
folders keep each one small however many images wait, and the name gives the key back for the
orphan sweep. A write goes to `<root>/.partial/` first and is renamed into place, so a reader
never sees half a blob. Files are not fsynced: a host crash loses queued images as it loses the
queue itself, and syncing every upload would cost more than the upload."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import quote, unquote

from shared.blobs.store import BlobStore, check_key
from shared.errors import BlobStoreFull, BlobStoreUnavailable

log = logging.getLogger(__name__)
PARTIAL = ".partial"
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class FileBlobStore(BlobStore):
    """Blobs as files under `root` (created on first write)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        """The folder."""
        return str(self.root)

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Write each blob through a temporary file and a rename."""
        written: list[str] = []
        try:
            for key, data in items:
                self._write(self._path(key), data)
                written.append(key)
        except BlobStoreUnavailable:
            self._forget(written)
            raise

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        """Read each file; None where there is none."""
        return [self._read(self._path(key)) for key in keys]

    def delete_many(self, keys: Iterable[str]) -> None:
        """Unlink each file."""
        for key in keys:
            path = self._path(key)
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise _refused("delete a blob from", self.root, exc) from None

    def list_old(
        self, cutoff: float, limit: int, prefix: str = "", start_after: str = ""
    ) -> list[tuple[str, float]]:
        """Files last written before `cutoff`, in the order of their paths (shard, then name);
        the first page also removes writes abandoned in `.partial/` before it (a process that
        died mid-write), which have no key to return."""
        after: tuple[str, ...] = ()
        if start_after:
            after = self._path(start_after).relative_to(self.root).parts
        else:
            self._remove_stale_partials(cutoff)
        found: list[tuple[str, float]] = []
        for top, shard in self._shards():
            if (top.name, shard.name) < after[:2]:
                continue
            for entry in sorted(_entries(Path(shard.path)), key=lambda e: e.name):
                if len(found) >= limit:
                    return found
                if (top.name, shard.name, entry.name) <= after:
                    continue
                key = unquote(entry.name)
                if not key.startswith(prefix):
                    continue  # no stat for other kinds of blob (they outnumber archives)
                written = _written_at(entry)
                if written is not None and written < cutoff:
                    found.append((key, written))
        return found

    def check(self) -> None:
        """Write and remove a probe file in `.partial/`."""
        self._write_partial(b"probe").unlink()

    def _path(self, key: str) -> Path:
        digest = hashlib.sha256(check_key(key).encode()).hexdigest()
        return self.root / digest[:2] / digest[2:4] / quote(key, safe="")

    def _write(self, path: Path, data: bytes) -> None:
        partial = self._write_partial(data)
        try:
            _in_folder(lambda: os.replace(partial, path), path.parent)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise _refused("write to", self.root, exc) from None

    def _write_partial(self, data: bytes) -> Path:
        partial = self.root / PARTIAL / f"{uuid.uuid4().hex}.tmp"
        try:
            _in_folder(lambda: partial.write_bytes(data), partial.parent)
        except OSError as exc:
            _unlink_quietly(partial)
            raise _refused("write to", self.root, exc) from None
        return partial

    def _read(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _refused("read from", self.root, exc) from None

    def _forget(self, keys: list[str]) -> None:
        """Best effort: a failed batch of writes leaves none of its blobs behind where it can."""
        for key in keys:
            _unlink_quietly(self._path(key))

    def _shards(self) -> Iterable[tuple[os.DirEntry[str], os.DirEntry[str]]]:
        for top in sorted(_entries(self.root), key=lambda e: e.name):
            if top.is_dir() and top.name != PARTIAL:
                for shard in sorted(_entries(Path(top.path)), key=lambda e: e.name):
                    if shard.is_dir():
                        yield top, shard

    def _remove_stale_partials(self, cutoff: float) -> None:
        for entry in _entries(self.root / PARTIAL):
            if _written_before(entry, cutoff):
                _unlink_quietly(Path(entry.path))


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    """The folder's entries; none when it does not exist (nothing written there yet)."""
    try:
        with os.scandir(folder) as it:
            return list(it)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _refused("list", folder, exc) from None


def _written_before(entry: os.DirEntry[str], cutoff: float) -> bool:
    """A file last written before `cutoff`; False for one deleted since it was listed."""
    written = _written_at(entry)
    return written is not None and written < cutoff


def _written_at(entry: os.DirEntry[str]) -> float | None:
    """When a file was last written; None for something else, or one deleted since listed."""
    try:
        return entry.stat().st_mtime if entry.is_file() else None
    except FileNotFoundError:
        return None


def _in_folder(write: Callable[[], object], folder: Path) -> None:
    """`write`, creating `folder` first only when it is missing: an upload writes thousands of
    blobs into folders that mostly exist already, and a mkdir per write doubled its syscalls."""
    try:
        write()
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
        write()


def _unlink_quietly(path: Path) -> None:
    # Cleanup after a failure that is already being reported: a second failure adds nothing.
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _refused(doing: str, root: Path, exc: OSError) -> BlobStoreUnavailable:
    """The store's error for an OS error: full (507) for no space or quota, else 503. The path
    goes to the log only: the message may reach an API client."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    log.warning("blob store: cannot %s %s: %s", doing, root, reason)
    if exc.errno in _FULL:
        return BlobStoreFull(f"the blob store is full ({reason}); retry later")
    return BlobStoreUnavailable(f"the blob store cannot {doing} its folder ({reason}); retry later")
