"""The data-mining port on SQL: one GROUP BY over the level's rows (joined with the levels
above), keyed by index columns or values read from the stored JSON; the consistency report
from the rows' columns and stored JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Select, func, literal_column, select, true

from dicomweb_server.dicom import attributes as a
from dicomweb_server.dicom.attributes import Level
from dicomweb_server.dicom.matching import Key
from dicomweb_server.index.sql import query
from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.entities import ENTITIES, ChildColumn, Entity
from dicomweb_server.index.sql.models import instances, series, studies
from dicomweb_server.index.sql.scope import limited
from dicomweb_server.services.context import StudyScope
from dicomweb_server.services.ports.stats import Group, Inconsistency


class SqlStatsIndex:
    def __init__(self, db: Database) -> None:
        self._db = db

    def aggregate(
        self,
        level: Level,
        group_by: Sequence[int],
        matches: Sequence[Key],
        scope: StudyScope | None,
        limit: int,
        fuzzy: bool = False,
    ) -> list[Group]:
        entity = ENTITIES[level]
        keys: list[Any] = []
        multi: list[tuple[Any, Any]] = []  # (FROM to join, ON clause) per multi-valued key
        for i, tag in enumerate(group_by):
            key, joined = self._group_key(entity, tag, f"g{i}")
            keys.append(key.label(f"g{i}"))
            if joined is not None:
                multi.append(joined)
        if level is Level.INSTANCE:
            counts: list[Any] = [
                func.count(func.distinct(instances.c.study_pk)).label("n_studies"),
                func.count(func.distinct(instances.c.series_pk)).label("n_series"),
                func.count().label("n_instances"),
                func.coalesce(func.sum(instances.c.size), 0).label("n_bytes"),
            ]
            base: Select[Any] = select(*keys, *counts).select_from(
                instances.join(series, instances.c.series_pk == series.c.pk).join(
                    studies, instances.c.study_pk == studies.c.pk
                )
            )
        elif level is Level.SERIES:
            sizes = (
                select(instances.c.series_pk, func.sum(instances.c.size).label("size"))
                .group_by(instances.c.series_pk)
                .subquery("sizes")
            )
            counts = [
                func.count(func.distinct(series.c.study_pk)).label("n_studies"),
                func.count().label("n_series"),
                func.coalesce(func.sum(series.c.number_of_instances), 0).label("n_instances"),
                func.coalesce(func.sum(sizes.c.size), 0).label("n_bytes"),
            ]
            base = select(*keys, *counts).select_from(
                series.join(studies, series.c.study_pk == studies.c.pk).outerjoin(
                    sizes, sizes.c.series_pk == series.c.pk
                )
            )
        else:
            sizes = (
                select(instances.c.study_pk, func.sum(instances.c.size).label("size"))
                .group_by(instances.c.study_pk)
                .subquery("sizes")
            )
            counts = [
                func.count().label("n_studies"),
                func.coalesce(func.sum(studies.c.number_of_series), 0).label("n_series"),
                func.coalesce(func.sum(studies.c.number_of_instances), 0).label("n_instances"),
                func.coalesce(func.sum(sizes.c.size), 0).label("n_bytes"),
            ]
            base = select(*keys, *counts).select_from(
                studies.outerjoin(sizes, sizes.c.study_pk == studies.c.pk)
            )
        for joined, on in multi:
            base = base.outerjoin(joined, on)
        stmt = base.where(query.where(entity, list(matches), self._db.dialect, fuzzy=fuzzy))
        stmt = limited(stmt, scope, with_series=level is not Level.STUDY)
        if keys:
            stmt = stmt.group_by(*keys)
        stmt = stmt.order_by(literal_column(_COUNTED[level]).desc(), *keys).limit(limit)
        with self._db.connect() as conn:
            rows = conn.execute(stmt).all()
        found = []
        for row in rows:
            values = tuple(None if row[i] is None else str(row[i]) for i in range(len(keys)))
            if not keys and not row.n_instances and not row.n_studies:
                continue
            found.append(
                Group(
                    values,
                    int(row.n_studies),
                    int(row.n_series),
                    int(row.n_instances),
                    int(row.n_bytes),
                )
            )
        return found

    def _group_key(self, entity: Entity, tag: int, name: str) -> tuple[Any, Any | None]:
        """What rows are grouped by for `tag`: one row per value of a multi-valued attribute
        (a study with CT and MR series counts under CT and under MR), each joined to its
        owner; a count the index keeps, as its column; else the index column."""
        for each in reversed(entity.chain()):
            if tag in each.columns:
                return each.columns[tag].column, None
            child = each.children.get(tag) or _COMPUTED_CHILDREN.get(tag)
            if child is not None and each.name == "study":
                rows = (
                    select(child.parent_key.label("owner"), child.column.label("value"))
                    .where(child.column.is_not(None), child.column != "")
                    .distinct()
                    .subquery(name)
                )
                return rows.c.value, (rows, rows.c.owner == child.parent_pk)
            if tag in _COUNTS.get(each.name, {}):
                return _COUNTS[each.name][tag], None
        owner = entity.owner(tag) or entity
        return self._json_values(owner.json, tag, name)

    def _json_values(self, column: Any, tag: int, name: str) -> tuple[Any, Any]:
        """Each value of a stored JSON attribute as a row of its own (PostgreSQL's
        jsonb_array_elements, SQLite's json_each); a name by its Alphabetic group."""
        key = f"{tag:08X}"  # a constant of the code (a dictionary tag), never request text
        name_group = a.vr_of(tag) == "PN"
        if self._db.dialect == "postgresql":
            path: Any = literal_column(f"({_qualified(column)} -> '{key}' -> 'Value')")
            if name_group:
                items = func.jsonb_array_elements(path).table_valued("value").lateral(name)
                return items.c.value.op("->>")("Alphabetic"), (items, true())
            items = func.jsonb_array_elements_text(path).table_valued("value").lateral(name)
            return items.c.value, (items, true())
        items = (
            func.json_each(
                literal_column(_qualified(column)), literal_column(f"'$.\"{key}\".Value'")
            )
            .table_valued("value")
            .alias(name)
        )
        value = func.json_extract(items.c.value, "$.Alphabetic") if name_group else items.c.value
        return value, (items, true())

    def inconsistencies(self, limit: int) -> list[Inconsistency]:
        found: list[Inconsistency] = []
        dialect = self._db.dialect
        checks = {
            "patient-name": studies.c.patient_name,
            "patient-birth-date": studies.c.patient_birth_date,
            "patient-sex": studies.c.patient_sex,
        }
        with self._db.connect() as conn:
            # PS3.4 C.1.1 (the Patient level): one patient, one name, birth date and sex.
            for kind, column in checks.items():
                value = func.coalesce(column, "")
                rows = conn.execute(
                    select(studies.c.patient_id, _listed(dialect, value))
                    .where(studies.c.patient_id.is_not(None), studies.c.patient_id != "")
                    .group_by(studies.c.patient_id)
                    .having(func.count(func.distinct(value)) > 1)
                    .order_by(studies.c.patient_id)
                    .limit(limit)
                ).all()
                found += [Inconsistency(kind, r[0], _split(r[1])) for r in rows]
            # A study under two patients: its instances' PatientIDs disagree.
            patient = query.json_first(instances.c.metadata, a.PATIENT_ID, dialect)
            per_instance = func.coalesce(patient, "")
            rows = conn.execute(
                select(studies.c.study_instance_uid, _listed(dialect, per_instance))
                .select_from(instances.join(studies, instances.c.study_pk == studies.c.pk))
                .group_by(studies.c.study_instance_uid)
                .having(func.count(func.distinct(per_instance)) > 1)
                .order_by(studies.c.study_instance_uid)
                .limit(limit)
            ).all()
            found += [Inconsistency("study-patients", r[0], _split(r[1])) for r in rows]
            # A series holds one modality (PS3.3 C.7.3.1).
            modality = func.coalesce(
                query.json_first(instances.c.metadata, a.MODALITY, dialect), ""
            )
            rows = conn.execute(
                select(series.c.series_instance_uid, _listed(dialect, modality))
                .select_from(instances.join(series, instances.c.series_pk == series.c.pk))
                .group_by(series.c.series_instance_uid)
                .having(func.count(func.distinct(modality)) > 1)
                .order_by(series.c.series_instance_uid)
                .limit(limit)
            ).all()
            found += [Inconsistency("series-modality", r[0], _split(r[1])) for r in rows]
        return found


_COUNTED = {Level.STUDY: "n_studies", Level.SERIES: "n_series", Level.INSTANCE: "n_instances"}
# Study attributes the index computes from the rows below (PS3.18 Table 10.6.3-3).
_COMPUTED_CHILDREN = {
    a.SOP_CLASSES_IN_STUDY: ChildColumn(
        instances, instances.c.study_pk, studies.c.pk, instances.c.sop_class_uid
    ),
}
_COUNTS: dict[str, dict[int, Any]] = {
    "study": {
        a.NUMBER_OF_STUDY_RELATED_SERIES: studies.c.number_of_series,
        a.NUMBER_OF_STUDY_RELATED_INSTANCES: studies.c.number_of_instances,
    },
    "series": {a.NUMBER_OF_SERIES_RELATED_INSTANCES: series.c.number_of_instances},
}


def _qualified(column: Any) -> str:
    return f"{column.table.name}.{column.name}"


def _listed(dialect: str, value: Any) -> Any:
    """The distinct values of a group as a JSON array."""
    if dialect == "postgresql":
        return func.json_agg(func.distinct(value))
    return func.json_group_array(func.distinct(value))


def _split(text: Any) -> list[str]:
    if text is None:
        return []
    values = orjson.loads(text) if isinstance(text, str | bytes) else text
    return sorted({str(v) for v in values})
