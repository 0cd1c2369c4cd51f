"""The data-mining port on SQL: one GROUP BY over the level's rows (joined with the levels
above), keyed by index columns or values read from the stored JSON; the consistency report
from the rows' columns and stored JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Select, func, literal_column, select

from dicomweb_server.dicom import attributes as a
from dicomweb_server.dicom.attributes import Level
from dicomweb_server.dicom.matching import Key
from dicomweb_server.index.sql import query
from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.entities import ENTITIES
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
        keys = [
            query.first_value(entity, tag, self._db.dialect).label(f"g{i}")
            for i, tag in enumerate(group_by)
        ]
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
