"""The spool: where the parts of a request wait while it is received and stored.

Each request gets a folder of its own, locked (flock) for as long as the request runs and
removed when it ends, whatever ends it (an answer, an error, a timeout, a client that goes
away), so a request never leaves a file behind. A process killed in the middle of a request
cannot remove its folder, but the kernel releases its lock: a folder whose lock can be taken
belongs to no running request, and `sweep()` (run at start and in the background) removes
it. Several processes on one machine share the spool folder this way without coordination.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

_PREFIX = "request-"
# A request's folder is made under this prefix and renamed once its lock is held, so a
# sweep never sees a request folder that is not locked yet.
_STAGING = ".new-"
_LOCK = ".lock"
# A staging folder is being made right now: left alone this long.
_CREATING_SECONDS = 60.0
# Below this much free space the spool is reported full (not ready).
MIN_FREE_BYTES = 16 * 2**20


class RequestSpool:
    """The folder of one request: every file it spools goes here."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def open_part(self) -> tuple[Path, IO[bytes]]:
        """A new file for one request part."""
        fd, name = tempfile.mkstemp(prefix="part-", suffix=".dcm", dir=self.path)
        return Path(name), os.fdopen(fd, "wb")

    def new_path(self, suffix: str) -> Path:
        """A fresh file in the folder, created empty (so the name is this request's)."""
        fd, name = tempfile.mkstemp(prefix="file-", suffix=suffix, dir=self.path)
        os.close(fd)
        return Path(name)


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def request(self) -> Iterator[RequestSpool]:
        """A folder for one request, removed with everything in it when the block ends."""
        path = staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=self.root))
        lock = os.open(staging / _LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.root / (_PREFIX + staging.name[len(_STAGING) :])
            os.rename(staging, path)
            yield RequestSpool(path)
        finally:
            shutil.rmtree(path, ignore_errors=True)
            os.close(lock)

    def check(self) -> None:
        """Raise OSError when requests could not be spooled: read-only or full."""
        if not os.access(self.root, os.W_OK):
            raise OSError("the spool folder is not writable (read-only)")
        usage = os.statvfs(self.root)
        if usage.f_bavail * usage.f_frsize < MIN_FREE_BYTES:
            raise OSError("the spool folder's file system is full")

    def leftovers(self) -> list[Path]:
        """Folders (and loose files) no running request owns."""
        return [entry for entry in self._entries() if self._unowned(entry, remove=False)]

    def sweep(self) -> list[Path]:
        """Remove what no running request owns; the paths removed."""
        return [entry for entry in self._entries() if self._unowned(entry, remove=True)]

    def _entries(self) -> list[Path]:
        try:
            return sorted(self.root.iterdir())
        except FileNotFoundError:
            return []

    def _unowned(self, entry: Path, remove: bool) -> bool:
        if entry.name.startswith(_STAGING):
            try:
                owned = time.time() - entry.stat().st_mtime < _CREATING_SECONDS
            except FileNotFoundError:
                return False
        elif entry.name.startswith(_PREFIX) and entry.is_dir():
            owned = _locked(entry / _LOCK)
        else:
            # Loose files come from versions that spooled into the root folder.
            owned = False
        if not owned and remove:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        return not owned


def _locked(lock_file: Path) -> bool:
    """Whether a running request holds this lock (its process holds it open)."""
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
