"""Search (QIDO-RS, PS3.18 10.6): match, then build each result's DICOM JSON.

Results come from the index alone: the attributes kept on study, series and instance rows,
plus the computed attributes (counts, ModalitiesInStudy, RetrieveURL).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from dicomweb_server.dicom import attributes as a
from dicomweb_server.dicom.attributes import RETURN_KEYS, Level, keyword_of, levels_above
from dicomweb_server.dicom.matching import Key, Match, MatchKind, SearchRequest
from dicomweb_server.services.context import READ, Caller
from dicomweb_server.services.errors import NotFound
from dicomweb_server.services.ports import JsonDict, SearchIndex, SearchQuery, SearchResult

T = TypeVar("T")

# PS3.18 10.6.1: "ONLINE", every stored instance is available for immediate retrieval.
_ONLINE = {"vr": "CS", "Value": ["ONLINE"]}


# PS3.18 (QIDO-RS response): the warning when the server's maximum cut the results.
TRUNCATED = (
    "The number of results exceeded the maximum supported by the server. "
    "Additional results can be requested."
)


@dataclass(frozen=True)
class Page:
    """A page asked for with limit/offset under the server's maximum: the index is asked for
    `fetch` rows, one more than the page (the extra one tells whether more match)."""

    limit: int
    offset: int
    capped: bool  # the server's maximum, not the client, set the limit

    @classmethod
    def of(cls, request: SearchRequest, max_limit: int) -> Page:
        asked = request.limit
        return cls(
            min(max_limit if asked is None else asked, max_limit),
            request.offset,
            asked is None or asked > max_limit,
        )

    @property
    def fetch(self) -> int:
        return self.limit + 1

    def cut(self, rows: list[T], warnings: list[str]) -> tuple[list[T], int | None]:
        """The page's rows and where the next page starts (None: nothing more matches); the
        truncation warning when the server's maximum cut them."""
        if len(rows) <= self.limit:
            return rows, None
        if self.capped:
            warnings.append(TRUNCATED)
        return rows[: self.limit], (self.offset + self.limit if self.limit else None)


# (study, series, instance) -> the RetrieveURL of that study, series or instance.
RetrieveUrl = Callable[[str, str | None, str | None], str]


@dataclass
class SearchResponse:
    results: list[JsonDict]
    warnings: list[str] = field(default_factory=list)
    # Where the next page starts when more results match than this page holds.
    next_offset: int | None = None


class SearchService:
    def __init__(self, index: SearchIndex, max_limit: int) -> None:
        self._index = index
        self.max_limit = max_limit

    def search(
        self,
        caller: Caller,
        level: Level,
        request: SearchRequest,
        retrieve_url: RetrieveUrl,
        study_uid: str | None = None,
        series_uid: str | None = None,
    ) -> SearchResponse:
        """Match `request` at `level` (within a study or series when given); each result's
        RetrieveURL comes from `retrieve_url` (the caller knows its URLs, this service only
        the identifiers)."""
        caller.require(READ)
        if study_uid is not None and not self._index.exists(study_uid, series_uid, caller.studies):
            what = "series" if series_uid else "study"
            raise NotFound(f"no {what} {series_uid or study_uid} is stored")
        warnings = list(request.warnings)
        matchable = self._index.matchable(level)
        matches: list[Key] = []
        for match in request.matches:
            if isinstance(match, Match) and match.kind is MatchKind.UNIVERSAL:
                continue  # nothing to match: the attribute is only returned
            if match.tag in matchable or self._index.json_matchable(level, match.tag):
                matches.append(match)
            else:
                warnings.append(
                    f"matching on {keyword_of(match.tag)} is not supported at the {level} "
                    "level; the key was ignored"
                )
        # Asked of the index only when there is an orderby (most queries have none).
        orderable = self._index.orderable(level) if request.order else frozenset()
        order = []
        for tag, descending in request.order:
            if tag in orderable:
                order.append((tag, descending))
            else:
                warnings.append(
                    f"sorting by {keyword_of(tag)} is not supported at the {level} level; "
                    "the orderby key was ignored"
                )
        page = Page.of(request, self.max_limit)
        wanted = self._wanted(level, request, study_uid, series_uid)
        needs_metadata = level is Level.INSTANCE and (
            request.include_all
            or any(
                a.level_of(t) is Level.INSTANCE and t not in wanted.stored_instance_keys
                for t in wanted.tags
            )
        )
        # One row more than the page tells whether more results match.
        results = self._index.search(
            SearchQuery(
                level=level,
                matches=matches,
                study_uid=study_uid,
                series_uid=series_uid,
                limit=page.fetch,
                offset=page.offset,
                with_metadata=needs_metadata,
                fuzzy=request.fuzzy,
                timezone_offset=request.timezone_offset,
                scope=caller.studies,
                order=tuple(order),
            )
        )
        results, next_offset = page.cut(results, warnings)
        return SearchResponse(
            [self._render(level, r, wanted, request.include_all, retrieve_url) for r in results],
            warnings,
            next_offset,
        )

    def matching_studies(
        self, caller: Caller, request: SearchRequest, study_uids: list[str]
    ) -> set[str]:
        """Which of `study_uids` the caller may see and `request`'s keys match (the live
        streams' and webhooks' filters): one query per page of UIDs, nothing rendered."""
        keys = request.matching_keys()
        found: set[str] = set()
        unique = sorted(set(study_uids))
        for start in range(0, len(unique), self.max_limit):
            page = tuple(unique[start : start + self.max_limit])
            kind = MatchKind.SINGLE if len(page) == 1 else MatchKind.LIST
            results = self._index.search(
                SearchQuery(
                    level=Level.STUDY,
                    matches=[*keys, Match(a.STUDY_INSTANCE_UID, "UI", kind, page)],
                    limit=len(page),
                    fuzzy=request.fuzzy,
                    timezone_offset=request.timezone_offset,
                    scope=caller.studies,
                )
            )
            found.update(r.study_uid for r in results)
        return found

    def _wanted(
        self, level: Level, request: SearchRequest, study_uid: str | None, series_uid: str | None
    ) -> _Wanted:
        tags: set[int] = set(RETURN_KEYS[level])
        # Across the archive, results carry the return keys of the levels above them too.
        if level is Level.SERIES and study_uid is None:
            tags |= set(RETURN_KEYS[Level.STUDY])
        if level is Level.INSTANCE:
            if study_uid is None:
                tags |= set(RETURN_KEYS[Level.STUDY])
            if series_uid is None:
                tags |= set(RETURN_KEYS[Level.SERIES])
        tags |= request.include_fields
        tags |= {m.tag for m in request.matches}
        return _Wanted(tags, frozenset(RETURN_KEYS[Level.INSTANCE]))

    def _render(
        self,
        level: Level,
        result: SearchResult,
        wanted: _Wanted,
        include_all: bool,
        retrieve_url: RetrieveUrl,
    ) -> JsonDict:
        merged: dict[str, Any] = {}
        for lv in levels_above(level):
            merged.update(result.attributes.get(lv, {}))
        if result.metadata is not None:
            merged.update(orjson.loads(result.metadata))
        merged.update(result.aggregates.to_json())
        merged[f"{a.INSTANCE_AVAILABILITY:08X}"] = _ONLINE
        url = retrieve_url(
            result.study_uid,
            None if level is Level.STUDY else result.series_uid,
            result.sop_instance_uid if level is Level.INSTANCE else None,
        )
        merged[f"{a.RETRIEVE_URL:08X}"] = {"vr": "UR", "Value": [url]}
        if include_all:
            return dict(sorted(merged.items()))
        keys = sorted(f"{t:08X}" for t in wanted.tags)
        return {k: merged[k] for k in keys if k in merged}


@dataclass(frozen=True)
class _Wanted:
    tags: set[int]
    stored_instance_keys: frozenset[int]
