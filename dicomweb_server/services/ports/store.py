"""The store port: what the index keeps of one instance, indexed in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from dicomweb_server.dicom.frames import Ranges

JsonDict = dict[str, Any]


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

    # Per frame its byte ranges (a list at ingest; read from the index, a FrameTable that
    # converts only the frames asked for).
    frames: Sequence[Ranges] | None
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
    # Access-control labels the study gets (added to those it has).
    labels: frozenset[str] = frozenset()
    # Set for a caller limited to labels: a study already stored must carry one of them, or
    # the instance is refused (it may not write into a study it cannot see).
    within: frozenset[str] | None = None


class AddOutcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # same SOP Instance UID already stored in the same series
    REPLACED = "replaced"  # a duplicate whose stored copy was replaced (replace=True)
    CONFLICT = "conflict"  # a UID already belongs elsewhere in the hierarchy
    REFUSED = "refused"  # the study exists and is outside the caller's labels


@dataclass(frozen=True)
class AddResult:
    outcome: AddOutcome
    message: str = ""
    # The blob the index no longer points to, after a replacement.
    replaced_key: str | None = None


class StoreIndex(Protocol):
    def add_instances(self, batch: list[NewInstance], replace: bool = False) -> list[AddResult]:
        """Index the instances and update their studies' and series' aggregates, all in one
        transaction; a result per instance, in order (one that cannot be added changes
        nothing and leaves the others added).

        A duplicate in the same series is left as it is, or with `replace` has its object
        and metadata replaced in the same transaction.
        """
