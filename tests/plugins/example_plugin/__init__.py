"""An example plugin, as a separately installed package would be (its dist-info beside it
names the entry points): a blob store in memory, an ingest step that stamps every object
and refuses some, one that fails, and an event consumer that records what it is told."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from dicomweb_server.dicom.errors import ObjectRejected
from dicomweb_server.services.ports.changes import Change

STAMP = "stamped by the example plugin"
REFUSED_PATIENT = "REFUSE-ME"

# What the plugin's objects did, for the tests to look at.
STORES: list[MemoryBlobStore] = []
RECORDED: list[Change] = []
_LOCK = threading.Lock()


class MemoryBlobStore:
    """A BlobStore (services/ports/blobs.py) holding objects in a dict."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put_file(self, key: str, path: Path) -> None:
        data = path.read_bytes()
        path.unlink()
        with self._lock:
            self.objects[key] = data

    def sync(self, keys: Sequence[str]) -> None:
        pass

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        with self._lock:
            if key not in self.objects:
                raise FileNotFoundError(key)
            return self.objects[key][offset : offset + length]

    def iter_range(
        self, key: str, offset: int = 0, length: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        data = self.read_range(key, offset, 1 << 62 if length is None else length)
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    def delete(self, key: str) -> None:
        with self._lock:
            self.objects.pop(key, None)

    def iter_keys(self) -> Iterator[tuple[str, float]]:
        with self._lock:
            keys = list(self.objects)
        return iter([(k, 0.0) for k in keys])

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass


def blob_store(settings: Any) -> MemoryBlobStore:
    store = MemoryBlobStore()
    STORES.append(store)
    return store


class StampStep:
    """An IngestStep (services/ports/plugins.py)."""

    name = "example-stamp"
    warning = "stamped by the example plugin's ingest step"

    def apply(self, ds: Dataset) -> None:
        if ds.get("PatientID") == REFUSED_PATIENT:
            raise ObjectRejected(0xA900, "the example plugin refuses this patient's objects")
        ds.InstitutionalDepartmentName = STAMP

    def study_uid(self, uid: str) -> str:
        return uid


def stamp_step(settings: Any) -> StampStep:
    return StampStep()


class BrokenStep(StampStep):
    name = "example-broken"

    def apply(self, ds: Dataset) -> None:
        raise RuntimeError("a bug in the plugin")


def broken_step(settings: Any) -> BrokenStep:
    return BrokenStep()


class Recorder:
    """An EventConsumer (services/ports/plugins.py)."""

    name = "example-recorder"

    def consume(self, changes: list[Change]) -> None:
        with _LOCK:
            RECORDED.extend(changes)


def recorder(settings: Any) -> Recorder:
    return Recorder()
