"""Objects as files under one folder; keys are relative paths built from validated UIDs."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

# Below this much free space the store is reported full (not ready): a STOW would fail.
MIN_FREE_BYTES = 16 * 2**20
# preadv's flag for a read that must not wait for the disk (Linux 4.14+), when Python has it.
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


class FilesystemBlobStore:
    def __init__(self, root: Path) -> None:
        self._root = root.resolve()
        self._root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        # Keys come from validated UIDs; this guards the invariant all the same, lexically
        # (resolving symlinks on every read would cost a system call per path component).
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"blob key {key!r} leaves the store")
        return self._root.joinpath(*parts)

    def put_file(self, key: str, path: Path) -> None:
        """Move the file into place; `sync` makes it durable. A folder made on the way is
        made durable at once (its entry in its parent), which happens once per series."""
        target = self._path(key)
        self._make_folders(target.parent)
        try:
            os.replace(path, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # Another file system: copy, then move into place atomically; a copy cut short
            # (a full disk) is removed, so nothing half stored remains.
            partial = target.with_name(target.name + ".partial")
            try:
                shutil.copyfile(path, partial)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
            path.unlink(missing_ok=True)

    def sync(self, keys: Sequence[str]) -> None:
        """fsync each object, then each folder that got a new entry, once: the objects and
        their names survive a power loss before the index commits a row pointing at them."""
        folders: set[Path] = set()
        for key in keys:
            path = self._path(key)
            _fsync(path)
            folders.add(path.parent)
        for folder in sorted(folders):
            _fsync(folder)

    def _make_folders(self, folder: Path) -> None:
        """Make `folder` and the folders above it that are missing, each made durable in its
        parent before the next is made in it."""
        if folder.is_dir():
            return
        if folder.parent != self._root:
            self._make_folders(folder.parent)
        try:
            folder.mkdir()
        except FileExistsError:
            return  # made by a concurrent store, which makes it durable
        _fsync(folder.parent)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        with self._path(key).open("rb") as fp:
            fp.seek(offset)
            return fp.read(length)

    def read_cached(self, key: str, offset: int, length: int) -> bytes | None:
        """The bytes if the page cache holds them all (Linux's RWF_NOWAIT: a read that would
        wait for the disk fails at once instead), else None. Anything unusual (a missing or
        short file, a system without the flag) is None too: the usual read reports it."""
        if _NOWAIT is None:
            return None
        buffer = bytearray(length)
        view = memoryview(buffer)
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except (OSError, ValueError):
            return None
        try:
            done = 0
            while done < length:
                read = os.preadv(fd, [view[done:]], offset + done, _NOWAIT)
                if read <= 0:
                    return None
                done += read
        except OSError:  # BlockingIOError (not cached), or the flag not supported here
            return None
        finally:
            view.release()
            os.close(fd)
        return bytes(buffer)

    def iter_range(
        self, key: str, offset: int = 0, length: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        with self._path(key).open("rb", buffering=0) as fp:
            fp.seek(offset)
            remaining = length
            while remaining is None or remaining > 0:
                size = chunk_size if remaining is None else min(chunk_size, remaining)
                chunk = fp.read(size)
                if not chunk:
                    if remaining:
                        raise OSError(f"object {key} is shorter than its index says")
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def iter_keys(self) -> Iterator[tuple[str, float]]:
        for path in self._root.rglob("*"):
            if path.is_file() and not path.name.endswith(".partial"):
                yield path.relative_to(self._root).as_posix(), path.stat().st_mtime

    def check(self) -> None:
        if not os.access(self._root, os.W_OK):
            raise OSError("the object folder is not writable (read-only)")
        usage = os.statvfs(self._root)
        if usage.f_bavail * usage.f_frsize < MIN_FREE_BYTES:
            raise OSError("the object folder's file system is full")

    def close(self) -> None:
        """Nothing to release: files are opened per call."""


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's data and metadata to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
