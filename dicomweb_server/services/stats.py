"""Data-mining views (issue 18; Dicoogle's promise): totals, counts grouped by any
attributes under QIDO-RS keys (`GET /aggregate/series?groupby=Modality,StationName&
StudyDate=20260101-20260131`), and the consistency report of the patient model."""

from __future__ import annotations

from dataclasses import dataclass

from dicomweb_server.dicom import attributes as a
from dicomweb_server.dicom.attributes import (
    Level,
    keeps_at,
    keyword_of,
    level_of,
    levels_above,
    vr_of,
)
from dicomweb_server.dicom.matching import Key, SearchRequest, parse_attribute_id
from dicomweb_server.dicom.vr import UNMATCHABLE_VRS
from dicomweb_server.services.context import ADMIN, READ, Caller
from dicomweb_server.services.errors import InvalidRequest
from dicomweb_server.services.ports.stats import Group, Inconsistency, StatsIndex

MAX_GROUP_BY = 8
_PLURAL = {Level.STUDY: "studies", Level.SERIES: "series", Level.INSTANCE: "instances"}
# What the index computes for a level from the rows below it (PS3.18 Tables 10.6.3-3, -4).
_COMPUTED = {
    a.MODALITIES_IN_STUDY: Level.STUDY,
    a.SOP_CLASSES_IN_STUDY: Level.STUDY,
    a.NUMBER_OF_STUDY_RELATED_SERIES: Level.STUDY,
    a.NUMBER_OF_STUDY_RELATED_INSTANCES: Level.STUDY,
    a.NUMBER_OF_SERIES_RELATED_INSTANCES: Level.SERIES,
}


def _held(tag: int, level: Level) -> bool:
    """Whether rows of `level` (joined with the levels above) have a value of `tag`."""
    above = levels_above(level)
    if tag in _COMPUTED:
        return _COMPUTED[tag] in above
    return any(keeps_at(tag, each) for each in above)


@dataclass(frozen=True)
class Totals:
    studies: int
    series: int
    instances: int
    bytes: int


class StatsService:
    def __init__(self, index: StatsIndex, max_groups: int = 10_000) -> None:
        self._index = index
        self.max_groups = max_groups

    def totals(self, caller: Caller) -> Totals:
        caller.require(READ)
        found = self._index.aggregate(Level.STUDY, [], [], caller.studies, 1)
        if not found:
            return Totals(0, 0, 0, 0)
        g = found[0]
        return Totals(g.studies, g.series, g.instances, g.bytes)

    def aggregate(
        self, caller: Caller, level: Level, group_by: str, request: SearchRequest
    ) -> tuple[list[int], list[Group]]:
        """The groups and the attributes they are keyed by (as tags)."""
        caller.require(READ)
        tags = [parse_attribute_id(n.strip()) for n in group_by.split(",") if n.strip()]
        if len(tags) > MAX_GROUP_BY:
            raise InvalidRequest(f"groupby takes at most {MAX_GROUP_BY} attributes")
        for tag in tags:
            vr = vr_of(tag)
            if vr == "SQ" or vr in UNMATCHABLE_VRS:
                raise InvalidRequest(
                    f"{keyword_of(tag)}: a {vr} attribute has no value to group by"
                )
            if not _held(tag, level):
                # An instance attribute cannot key a study: which instance's value would it be?
                owner = _COMPUTED.get(tag, level_of(tag))
                raise InvalidRequest(
                    f"{keyword_of(tag)} is an attribute of the {owner.value} level, which "
                    f"{level.value} rows do not hold; aggregate the {_PLURAL[owner]} to group "
                    "by it"
                )
        if len(set(tags)) != len(tags):
            raise InvalidRequest("groupby names an attribute twice")
        keys: list[Key] = request.matching_keys()
        limit = min(request.limit or self.max_groups, self.max_groups)
        groups = self._index.aggregate(
            level, tags, keys, caller.studies, limit, fuzzy=request.fuzzy
        )
        return tags, groups

    def inconsistencies(self, caller: Caller, limit: int = 1000) -> list[Inconsistency]:
        """What PS3.4's patient model forbids, across the whole archive (scope admin: it
        names patients of every study)."""
        caller.require(ADMIN)
        return self._index.inconsistencies(min(max(limit, 1), 10_000))
