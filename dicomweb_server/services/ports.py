"""The ports the services need, one per transaction group, implemented by the adapters."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from dicomweb_server.dicom.attributes import Aggregates, Level
from dicomweb_server.dicom.frames import Ranges
from dicomweb_server.dicom.matching import Key

JsonDict = dict[str, Any]


class BlobStore(Protocol):
    """Where stored objects live, addressed by key."""

    def put_file(self, key: str, path: Path) -> None:
        """Store the local file at `path` under `key`, taking ownership of the file."""

    def read_range(self, key: str, offset: int, length: int) -> bytes: ...

    def iter_range(
        self, key: str, offset: int = 0, length: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        """The bytes of `key` from `offset`, `length` of them (all when None), in chunks."""

    def delete(self, key: str) -> None: ...

    def iter_keys(self) -> Iterator[tuple[str, float]]:
        """Every stored key with its last-modified time (seconds since the epoch)."""

    def check(self) -> None:
        """Raise if the store cannot be used."""

    def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True)
class StoredInstance:
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size: int


@dataclass(frozen=True)
class PixelLayout:
    """Where frames and bulk data values lie in the stored object (found at ingest)."""

    frames: list[Ranges] | None
    frames_error: str | None
    number_of_frames: int
    bulk_data: dict[str, tuple[int, int]]


@dataclass(frozen=True)
class NewInstance:
    """Everything the index keeps of one instance, computed once at ingest."""

    instance: StoredInstance  # what it is and where its object is
    study_attributes: JsonDict
    series_attributes: JsonDict
    instance_attributes: JsonDict
    metadata: str
    pixels: PixelLayout


class AddOutcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # same SOP Instance UID already stored in the same series
    REPLACED = "replaced"  # a duplicate whose stored copy was replaced (replace=True)
    CONFLICT = "conflict"  # a UID already belongs elsewhere in the hierarchy


@dataclass(frozen=True)
class AddResult:
    outcome: AddOutcome
    message: str = ""
    # The blob the index no longer points to, after a replacement.
    replaced_key: str | None = None


class StoreIndex(Protocol):
    def add_instance(self, instance: NewInstance, replace: bool = False) -> AddResult:
        """Index one instance and update its study and series aggregates atomically.

        A duplicate in the same series is left as it is, or with `replace` has its object
        and metadata replaced in the same transaction.
        """


@dataclass
class SearchResult:
    """One match of a search: the attributes the index keeps for each level."""

    study_uid: str
    series_uid: str | None
    sop_instance_uid: str | None
    attributes: dict[Level, JsonDict]
    aggregates: Aggregates
    metadata: str | None = None


@dataclass(frozen=True)
class SearchQuery:
    level: Level
    matches: Sequence[Key]
    study_uid: str | None = None
    series_uid: str | None = None
    limit: int = 100
    offset: int = 0
    with_metadata: bool = False
    # PS3.18 8.3.4.2 fuzzymatching: names match on the start of any of their components.
    fuzzy: bool = False
    # TimezoneOffsetFromUTC of the query, in minutes east of UTC (dicom/timezone.py).
    timezone_offset: int | None = None


class SearchIndex(Protocol):
    def matchable(self, level: Level) -> frozenset[int]:
        """Tags the index can match on in a query at `level` through its own columns."""

    def json_matchable(self, level: Level, tag: int) -> bool:
        """Whether the index can match `tag` at `level` on the attributes it keeps."""

    def search(self, query: SearchQuery) -> list[SearchResult]: ...

    def exists(self, study_uid: str, series_uid: str | None = None) -> bool: ...


@dataclass(frozen=True)
class StoredPixels:
    instance: StoredInstance
    layout: PixelLayout


class RetrieveIndex(Protocol):
    def instances(
        self, study_uid: str, series_uid: str | None = None, sop_instance_uid: str | None = None
    ) -> list[StoredInstance]:
        """Stored instances in the scope, ordered by series then instance number."""

    def metadata(
        self, study_uid: str, series_uid: str | None = None, sop_instance_uid: str | None = None
    ) -> list[str]:
        """The stored DICOM JSON texts of the instances in the scope."""

    def pixels(
        self, study_uid: str, series_uid: str, sop_instance_uid: str
    ) -> StoredPixels | None: ...


class CheckIndex(Protocol):
    def blob_keys(self) -> set[str]:
        """The blob key of every indexed instance."""

    def retired(self) -> dict[str, float]:
        """Copies replaced by newer ones: blob key -> when (seconds since the epoch); their
        objects are kept for readers until the sweep removes them."""

    def forget_retired(self, key: str) -> None:
        """The retired copy `key` has been removed from the blob store."""
