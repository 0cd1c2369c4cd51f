"""The search port on SQL: QIDO-RS keys compiled by `query.where` over the entity tables."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Select, String, bindparam, select

from dicomweb_server.dicom import attributes as a
from dicomweb_server.dicom.attributes import Aggregates, Level
from dicomweb_server.index.sql import query
from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.entities import ENTITIES
from dicomweb_server.index.sql.models import instances, series, studies
from dicomweb_server.index.sql.scope import limited
from dicomweb_server.services.context import StudyScope
from dicomweb_server.services.ports import SearchQuery, SearchResult


def split(value: str) -> list[str]:
    """A backslash-separated list column as its values."""
    return [v for v in value.split("\\") if v]


class SqlSearchIndex:
    def __init__(self, db: Database) -> None:
        self._db = db

    def matchable(self, level: Level) -> frozenset[int]:
        return query.matchable(ENTITIES[level])

    def json_matchable(self, level: Level, tag: int) -> bool:
        return query.json_matchable(ENTITIES[level], tag)

    def orderable(self, level: Level) -> frozenset[int]:
        return frozenset(_sort_columns(level))

    def exists(
        self, study_uid: str, series_uid: str | None = None, scope: StudyScope | None = None
    ) -> bool:
        params = {"study": study_uid, "series": series_uid}
        stmt = _EXISTS[series_uid is not None]
        if scope is not None:
            # A limited caller's statement is built per request (the unlimited ones once).
            stmt = limited(stmt, scope, with_series=series_uid is not None)
        with self._db.connect() as conn:
            return conn.execute(stmt, params).first() is not None

    def search(self, q: SearchQuery) -> list[SearchResult]:
        # Everything the statement is made of, values included.
        key = (
            "search",
            q.level,
            q.with_metadata,
            tuple(q.matches),
            q.study_uid,
            q.series_uid,
            q.limit,
            q.offset,
            q.fuzzy,
            q.timezone_offset,
            q.scope,
            q.order,
        )
        rows = self._db.rows(key, lambda: self._statement(q))
        return [_result(q.level, row) for row in rows]

    def _statement(self, q: SearchQuery) -> Select[Any]:
        entity = ENTITIES[q.level]
        stmt = _select(q).where(
            query.where(
                entity,
                list(q.matches),
                self._db.dialect,
                fuzzy=q.fuzzy,
                timezone_offset=q.timezone_offset,
            )
        )
        if q.study_uid is not None:
            stmt = stmt.where(studies.c.study_instance_uid == q.study_uid)
        if q.series_uid is not None:
            stmt = stmt.where(series.c.series_instance_uid == q.series_uid)
        stmt = limited(stmt, q.scope, with_series=q.level is not Level.STUDY)
        # The order asked for (empty values last, in either direction, on both databases),
        # then a stable one, so limit/offset pages never overlap.
        columns = _sort_columns(q.level)
        for tag, descending in q.order:
            column = columns[tag]
            stmt = stmt.order_by((column.desc() if descending else column.asc()).nulls_last())
        return stmt.order_by(entity.table.c.pk).limit(q.limit).offset(q.offset)


# Whether a study (False) or a series of a study (True) is stored, for a caller who may see
# every study; built once.
_EXISTS: dict[bool, Select[Any]] = {
    False: select(studies.c.pk)
    .where(studies.c.study_instance_uid == bindparam("study", type_=String))
    .limit(1),
    True: select(series.c.pk)
    .join(studies, series.c.study_pk == studies.c.pk)
    .where(
        studies.c.study_instance_uid == bindparam("study", type_=String),
        series.c.series_instance_uid == bindparam("series", type_=String),
    )
    .limit(1),
}


def _sort_columns(level: Level) -> dict[int, Any]:
    """The columns results of `level` can be sorted by: the indexed attributes of its
    entity and of those above it (joined), and the study's counts and modalities."""
    found = _SORTS.get(level)
    if found is None:
        found = {tag: c.column for e in ENTITIES[level].chain() for tag, c in e.columns.items()}
        found |= {
            a.NUMBER_OF_STUDY_RELATED_SERIES: studies.c.number_of_series,
            a.NUMBER_OF_STUDY_RELATED_INSTANCES: studies.c.number_of_instances,
            a.MODALITIES_IN_STUDY: studies.c.modalities_in_study,
        }
        if level is Level.SERIES:
            found[a.NUMBER_OF_SERIES_RELATED_INSTANCES] = series.c.number_of_instances
        _SORTS[level] = found
    return found


_SORTS: dict[Level, dict[int, Any]] = {}


def _select(q: SearchQuery) -> Select[Any]:
    """The rows of the query's level joined with the levels above it (built once per level;
    a Select is immutable, each query adds its clauses to a copy)."""
    key = (q.level, q.with_metadata and q.level is Level.INSTANCE)
    stmt = _SELECTS.get(key)
    if stmt is None:
        stmt = _SELECTS[key] = _build_select(q)
    return stmt


_SELECTS: dict[tuple[Level, bool], Select[Any]] = {}


def _build_select(q: SearchQuery) -> Select[Any]:
    columns: list[Any] = [
        studies.c.study_instance_uid,
        studies.c.attributes.label("study_attributes"),
        studies.c.modalities_in_study,
        studies.c.sop_classes_in_study,
        studies.c.number_of_series,
        studies.c.number_of_instances.label("study_instances"),
    ]
    if q.level is Level.STUDY:
        return select(*columns)
    columns += [
        series.c.series_instance_uid,
        series.c.attributes.label("series_attributes"),
        series.c.number_of_instances.label("series_instances"),
    ]
    if q.level is Level.SERIES:
        return select(*columns).select_from(series.join(studies, series.c.study_pk == studies.c.pk))
    columns += [
        instances.c.sop_instance_uid,
        instances.c.attributes.label("instance_attributes"),
    ]
    if q.with_metadata:
        columns.append(instances.c.metadata)
    return select(*columns).select_from(
        instances.join(series, instances.c.series_pk == series.c.pk).join(
            studies, instances.c.study_pk == studies.c.pk
        )
    )


def _result(level: Level, row: Any) -> SearchResult:
    attributes = {Level.STUDY: orjson.loads(row.study_attributes)}
    series_uid = instance_uid = metadata = None
    series_instances = None
    if level is not Level.STUDY:
        series_uid = row.series_instance_uid
        attributes[Level.SERIES] = orjson.loads(row.series_attributes)
        series_instances = int(row.series_instances)
    if level is Level.INSTANCE:
        instance_uid = row.sop_instance_uid
        attributes[Level.INSTANCE] = orjson.loads(row.instance_attributes)
        metadata = getattr(row, "metadata", None)
    aggregates = Aggregates(
        split(row.modalities_in_study),
        split(row.sop_classes_in_study),
        int(row.number_of_series),
        int(row.study_instances),
        series_instances,
    )
    return SearchResult(
        row.study_instance_uid, series_uid, instance_uid, attributes, aggregates, metadata
    )
