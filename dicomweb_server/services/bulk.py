"""Bulk import: folders (recursive), zip files and DICOMDIR media loaded through the same
ingest as STOW-RS (validation, duplicate policy, de-identification, change feed), by several
workers at once, with progress, a summary, and a journal that makes an interrupted import
resumable. Where the objects go is a `Sink`: this archive, or another one over STOW-RS."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from dicomweb_server.dicom.part10 import is_media_directory, looks_like_dicom
from dicomweb_server.dicom.store_status import InstanceOutcome
from dicomweb_server.services.ports.bulk import (
    FAILED,
    SKIPPED,
    STORED,
    Item,
    Result,
    Sink,
    Skip,
    result_of,
)
from dicomweb_server.services.store import Staged

# Files sent together: one flush and one transaction (or one STOW-RS request) per batch.
BATCH_FILES = 32
BATCH_BYTES = 64 * 2**20
_HEAD = 1024
MEDIA_DIRECTORY = "a DICOMDIR (media directory): the files it lists are imported"


@dataclass
class Progress:
    total_files: int = 0
    total_bytes: int = 0
    done_files: int = 0
    done_bytes: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> tuple[float, float]:
        """Files and bytes per second so far."""
        spent = max(time.monotonic() - self.started, 1e-6)
        return self.done_files / spent, self.done_bytes / spent

    @property
    def eta(self) -> float | None:
        _, per_second = self.rate
        if per_second <= 0:
            return None
        return max(self.total_bytes - self.done_bytes, 0) / per_second


@dataclass
class Summary:
    stored: int = 0
    resumed: int = 0  # done by an earlier run of the same import
    skipped: Counter[str] = field(default_factory=Counter)
    failed: list[tuple[str, str]] = field(default_factory=list)
    studies: set[str] = field(default_factory=set)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def walk(paths: list[Path]) -> Iterator[Item | Skip]:
    """Every object under `paths`, in a stable order: files of folders (recursively), the
    members of zip files, the files a DICOMDIR lists; what is not DICOM as a Skip."""
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    yield from _file(Path(root) / name, listed_by_folder=True)
        elif path.is_file():
            yield from _file(path, listed_by_folder=False)
        else:
            yield Skip(str(path), "no such file or folder")


def _file(path: Path, listed_by_folder: bool) -> Iterator[Item | Skip]:
    name = str(path)
    if path.is_symlink() or not path.is_file():
        yield Skip(name, "not a regular file")
        return
    if zipfile.is_zipfile(path) and path.suffix.lower() == ".zip":
        yield from _zip(path)
        return
    stat = path.stat()
    with path.open("rb") as fp:
        head = fp.read(_HEAD)
    # A media directory by its name or its content (any name, any transfer syntax).
    if path.name.upper() == "DICOMDIR" or is_media_directory(head):
        if listed_by_folder:
            # The files it lists are in the folder being walked.
            yield Skip(name, MEDIA_DIRECTORY)
        else:
            yield from _dicomdir(path)
        return
    if not looks_like_dicom(head):
        yield Skip(name, "not a DICOM file")
        return
    yield Item(name, stat.st_size, f"{stat.st_size}:{stat.st_mtime_ns}", lambda: path.open("rb"))


def _zip(path: Path) -> Iterator[Item | Skip]:
    stamp = path.stat().st_mtime_ns
    lock = threading.Lock()
    archive = zipfile.ZipFile(path)

    @contextlib.contextmanager
    def member(info: zipfile.ZipInfo) -> Iterator[BinaryIO]:
        with lock:
            opened = archive.open(info)
        with opened as fp:
            yield fp  # type: ignore[misc]

    for info in sorted(archive.infolist(), key=lambda i: i.filename):
        name = f"{path}!{info.filename}"
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            yield Skip(name, "an encrypted zip member")
            continue
        with lock, archive.open(info) as fp:
            head = fp.read(_HEAD)
        if PurePosixPath(info.filename).name.upper() == "DICOMDIR" or is_media_directory(head):
            # The files it lists are members of the same zip, imported as they come.
            yield Skip(name, MEDIA_DIRECTORY)
            continue
        if not looks_like_dicom(head):
            yield Skip(name, "not a DICOM file")
            continue
        yield Item(
            name, info.file_size, f"{info.file_size}:{stamp}", functools.partial(member, info)
        )


def _dicomdir(path: Path) -> Iterator[Item | Skip]:
    """The files a DICOMDIR lists (PS3.10 media), through pydicom's FileSet."""
    from pydicom.fileset import FileSet

    try:
        listed = [Path(instance.path) for instance in FileSet(path)]
    except Exception as exc:  # noqa: BLE001 - whatever pydicom says of a broken DICOMDIR
        yield Skip(str(path), f"the DICOMDIR cannot be read: {type(exc).__name__}")
        return
    for file in listed:
        yield from _file(file, listed_by_folder=False)


class Journal:
    """What an import finished, one line per object, appended once its batch is durable: a
    rerun of the same import skips it (the same name and stamp)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: set[tuple[str, str]] = set()
        if path.is_file():
            for line in path.read_text("utf-8", errors="replace").splitlines():
                name, sep, stamp = line.rpartition("\t")
                if sep:
                    self.done.add((name, stamp))
        path.parent.mkdir(parents=True, exist_ok=True)
        self._out = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def seen(self, item: Item) -> bool:
        return (item.name, item.stamp) in self.done

    def record(self, items: list[Item]) -> None:
        with self._lock:
            for item in items:
                self._out.write(f"{item.name}\t{item.stamp}\n")
            self._out.flush()
            os.fsync(self._out.fileno())

    def close(self) -> None:
        self._out.close()


def journal_path(folder: Path, paths: list[Path], target: str) -> Path:
    """The journal of an import of `paths` into `target`: the same command resumes it."""
    key = "\n".join([target, *sorted(str(p.resolve()) for p in paths)])
    return folder / f"import-{hashlib.sha256(key.encode()).hexdigest()[:16]}.journal"


class BulkImport:
    def __init__(
        self,
        sink: Sink,
        spool: Callable[[], contextlib.AbstractContextManager[Path]],
        journal: Journal,
        workers: int = 4,
        report: Callable[[Progress], None] = lambda _p: None,
    ) -> None:
        self._sink = sink
        # A folder of the object store's file system for the spooled copies of one batch.
        self._spool = spool
        self._journal = journal
        self._workers = max(1, workers)
        self._report = report
        self.progress = Progress()
        self.summary = Summary()
        self._lock = threading.Lock()

    def run(self, paths: list[Path]) -> Summary:
        found = list(walk(paths))
        todo: list[Item] = []
        for entry in found:
            if isinstance(entry, Skip):
                self.summary.skipped[entry.reason] += 1
            elif self._journal.seen(entry):
                self.summary.resumed += 1
            else:
                todo.append(entry)
        self.progress.total_files = len(todo)
        self.progress.total_bytes = sum(i.size for i in todo)
        self._report(self.progress)
        with ThreadPoolExecutor(self._workers, thread_name_prefix="import") as pool:
            for done in pool.map(self._batch, _batches(todo)):
                del done
        self._report(self.progress)
        return self.summary

    def _batch(self, items: list[Item]) -> None:
        with self._spool() as folder:
            files: list[tuple[Item, Path]] = []
            for n, item in enumerate(items):
                target = folder / f"{n}.dcm"
                try:
                    with item.opener() as src, target.open("wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                except (OSError, zipfile.BadZipFile, EOFError) as exc:
                    self._count([(item, Result(FAILED, f"cannot be read: {type(exc).__name__}"))])
                    continue
                files.append((item, target))
            results = self._sink.send(files) if files else []
        done = list(zip([i for i, _ in files], results, strict=True))
        self._journal.record([i for i, r in done if r.kind != FAILED])
        self._count(done)

    def _count(self, done: list[tuple[Item, Result]]) -> None:
        with self._lock:
            for item, result in done:
                self.progress.done_files += 1
                self.progress.done_bytes += item.size
                if result.kind == STORED:
                    self.summary.stored += 1
                elif result.kind == SKIPPED:
                    self.summary.skipped[result.reason] += 1
                else:
                    self.summary.failed.append((item.name, result.reason))
                if result.study_uid and result.kind == STORED:
                    self.summary.studies.add(result.study_uid)
        self._report(self.progress)


def _batches(items: list[Item]) -> Iterator[list[Item]]:
    batch: list[Item] = []
    size = 0
    for item in items:
        if batch and (len(batch) >= BATCH_FILES or size + item.size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item.size
    if batch:
        yield batch


class Stager(Protocol):
    """The ingest of this archive (StoreService)."""

    def stage(self, part: Path) -> InstanceOutcome | Staged: ...

    def commit(self, batch: list[Staged]) -> list[InstanceOutcome]: ...


def outcome_result(outcome: InstanceOutcome) -> Result:
    return result_of(outcome.status, outcome.message, outcome.study_uid)


class LocalSink:
    """Into this archive: each batch checked and put in the blob store file by file, then
    made durable and indexed together (one flush, one transaction), as a STOW-RS request."""

    def __init__(self, store: Stager) -> None:
        self._store = store

    def send(self, files: list[tuple[Item, Path]]) -> list[Result]:
        results: list[Result | None] = [None] * len(files)
        staged: list[tuple[int, Staged]] = []
        for n, (_item, path) in enumerate(files):
            done = self._store.stage(path)
            if isinstance(done, InstanceOutcome):
                results[n] = outcome_result(done)
            else:
                staged.append((n, done))
        if staged:
            committed = self._store.commit([s for _, s in staged])
            for (n, _), outcome in zip(staged, committed, strict=True):
                results[n] = outcome_result(outcome)
        return [r if r is not None else Result(FAILED, "not stored") for r in results]

    def close(self) -> None:
        pass
