"""The search port: queries of the matching AST, answered with the kept attributes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from dicomweb_server.dicom.attributes import Aggregates, Level
from dicomweb_server.dicom.matching import Key
from dicomweb_server.services.context import StudyScope
from dicomweb_server.services.ports.store import JsonDict


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
    # The studies the caller may see (None: every study), applied in the query itself.
    scope: StudyScope | None = None
    # The attributes to sort by (each with whether it is descending), from those of
    # `orderable`; the order of storage after them.
    order: tuple[tuple[int, bool], ...] = ()


class SearchIndex(Protocol):
    def matchable(self, level: Level) -> frozenset[int]:
        """Tags the index can match on in a query at `level` through its own columns."""

    def orderable(self, level: Level) -> frozenset[int]:
        """Tags the index can sort results of `level` by."""

    def json_matchable(self, level: Level, tag: int) -> bool:
        """Whether the index can match `tag` at `level` on the attributes it keeps."""

    def search(self, query: SearchQuery) -> list[SearchResult]: ...

    def exists(
        self, study_uid: str, series_uid: str | None = None, scope: StudyScope | None = None
    ) -> bool:
        """Whether the study (or series) is stored and the scope lets the caller see it."""
