"""The store port on SQL: one instance indexed in one transaction, aggregates kept exact
under concurrent stores into the same study."""

from __future__ import annotations

import time
from typing import Any

import orjson
from sqlalchemy import Row, Table, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.entities import INSTANCE, SERIES, STUDY, column_values
from dicomweb_server.index.sql.labels import add_labels, has_label
from dicomweb_server.index.sql.models import instances, retired_objects, series, studies
from dicomweb_server.index.sql.search import split
from dicomweb_server.services.errors import Unavailable
from dicomweb_server.services.ports import AddOutcome, AddResult, NewInstance


class _Abort(Exception):
    """Ends the transaction (rolled back) with an outcome that is not an error."""

    def __init__(self, result: AddResult) -> None:
        self.result = result


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


class SqlStoreIndex:
    def __init__(self, db: Database) -> None:
        self._db = db
        # Statements built once: SQLAlchemy then reuses their compiled SQL for every call.
        insert_of = pg_insert if db.dialect == "postgresql" else sqlite_insert
        self._insert = {
            table.name: insert_of(table)
            .on_conflict_do_nothing(index_elements=[unique])
            .returning(table.c.pk)
            for table, unique in (
                (studies, "study_instance_uid"),
                (series, "series_instance_uid"),
                (instances, "sop_instance_uid"),
            )
        }
        self._count_series_instance = (
            update(series)
            .where(series.c.pk == bindparam("series_pk"))
            .values(number_of_instances=series.c.number_of_instances + 1)
        )

    def add_instance(self, instance: NewInstance, replace: bool = False) -> AddResult:
        try:
            with self._db.writing() as conn:
                return self._add(conn, instance, replace)
        except _Abort as abort:
            return abort.result

    def _add(self, conn: Connection, inst: NewInstance, replace: bool) -> AddResult:
        """Its study, its series, its row, then the aggregates, in one transaction."""
        study, created = self._lock_study(conn, inst)
        if inst.within is not None and not created and not has_label(conn, study.pk, inst.within):
            raise _Abort(
                AddResult(
                    AddOutcome.REFUSED,
                    f"study {inst.instance.study_uid} is outside the studies this caller may see",
                )
            )
        if inst.labels:
            add_labels(conn, study.pk, inst.labels)
        series_pk, new_series = self._series(conn, inst, study.pk)
        existing = self._insert_instance(conn, inst, study.pk, series_pk)
        if existing is not None:
            return self._add_existing(conn, inst, replace, study, series_pk, existing)
        self._count(conn, study.pk, series_pk, new_series)
        self._add_sop_class(conn, study.pk, study.sop_classes_in_study, inst.instance.sop_class_uid)
        return AddResult(AddOutcome.STORED)

    def _insert_ignore(self, conn: Connection, table: Table, values: dict[str, Any]) -> int | None:
        """Insert a row unless its UID is there already; the new primary key, or None."""
        pk = conn.execute(self._insert[table.name], values).scalar_one_or_none()
        return None if pk is None else int(pk)

    def _lock_study(self, conn: Connection, inst: NewInstance) -> tuple[Row[Any, Any], bool]:
        """The study row, created if new (and whether it was), locked for this transaction:
        the lock serialises
        every store into this study, so its aggregates are read and written by one
        transaction at a time (PostgreSQL; SQLite serialises all writers with BEGIN
        IMMEDIATE)."""
        uid = inst.instance.study_uid
        created = self._insert_ignore(
            conn,
            studies,
            {
                **column_values(STUDY, inst.study_attributes),
                "study_instance_uid": uid,
                "attributes": _dumps(inst.study_attributes),
            },
        )
        row = conn.execute(
            select(studies.c.pk, studies.c.sop_classes_in_study)
            .where(studies.c.study_instance_uid == uid)
            .with_for_update()
        ).one()
        return row, created is not None

    def _series(self, conn: Connection, inst: NewInstance, study_pk: int) -> tuple[int, bool]:
        """The series row's key, created if new (and whether it was); a series UID already in
        another study is a conflict."""
        uid = inst.instance.series_uid
        series_pk = self._insert_ignore(
            conn,
            series,
            {
                **column_values(SERIES, inst.series_attributes),
                "study_pk": study_pk,
                "series_instance_uid": uid,
                "attributes": _dumps(inst.series_attributes),
            },
        )
        if series_pk is not None:
            return series_pk, True
        row = conn.execute(
            select(series.c.pk, series.c.study_pk).where(series.c.series_instance_uid == uid)
        ).one()
        if row.study_pk != study_pk:
            raise _Abort(
                AddResult(
                    AddOutcome.CONFLICT,
                    f"Series Instance UID {uid} already belongs to another study",
                )
            )
        return int(row.pk), False

    def _insert_instance(
        self, conn: Connection, inst: NewInstance, study_pk: int, series_pk: int
    ) -> Row[Any, Any, Any] | None:
        """Insert the instance row; the row already holding its UID, if one does.

        A UID another transaction committed between our look and our insert makes the insert
        do nothing (it waits for that transaction on the unique index): look again, so the
        outcome is the one the serial order would give (a conflict when the UID is in another
        series), never a duplicate of an instance the request cannot retrieve."""
        uid = inst.instance.sop_instance_uid
        for _attempt in range(3):
            existing = conn.execute(
                select(instances.c.pk, instances.c.series_pk, instances.c.blob_key).where(
                    instances.c.sop_instance_uid == uid
                )
            ).first()
            if existing is not None:
                return existing
            row = {
                "series_pk": series_pk,
                "study_pk": study_pk,
                "sop_instance_uid": uid,
                **_instance_row(inst),
            }
            if self._insert_ignore(conn, instances, row) is not None:
                return None
        raise Unavailable("the instance is being stored concurrently; try again shortly")

    def _count(self, conn: Connection, study_pk: int, series_pk: int, new_series: bool) -> None:
        """One more instance in the series and the study; a new series adds its Modality to
        ModalitiesInStudy (0008,0061)."""
        conn.execute(self._count_series_instance, {"series_pk": series_pk})
        values: dict[str, Any] = {"number_of_instances": studies.c.number_of_instances + 1}
        if new_series:
            values["number_of_series"] = studies.c.number_of_series + 1
            modalities = (
                conn.execute(
                    select(series.c.modality)
                    .distinct()
                    .where(series.c.study_pk == study_pk, series.c.modality.is_not(None))
                )
                .scalars()
                .all()
            )
            values["modalities_in_study"] = "\\".join(sorted(str(m) for m in modalities))
        conn.execute(update(studies).where(studies.c.pk == study_pk).values(**values))

    def _add_existing(
        self,
        conn: Connection,
        inst: NewInstance,
        replace: bool,
        study: Row[Any, Any],
        series_pk: int,
        existing: Row[Any, Any, Any],
    ) -> AddResult:
        """The outcome of storing a SOP Instance UID the index already holds."""
        stored = inst.instance
        if existing.series_pk != series_pk:
            raise _Abort(
                AddResult(
                    AddOutcome.CONFLICT,
                    f"SOP Instance UID {stored.sop_instance_uid} is already stored in another "
                    "series",
                )
            )
        if not replace:
            raise _Abort(AddResult(AddOutcome.DUPLICATE))
        conn.execute(
            update(instances).where(instances.c.pk == existing.pk).values(**_instance_row(inst))
        )
        # The old copy is retired in the same transaction: kept for readers that looked it
        # up before this commit, removed by the sweep after the grace period.
        conn.execute(
            insert(retired_objects).values(blob_key=existing.blob_key, retired_at=time.time())
        )
        self._add_sop_class(conn, study.pk, study.sop_classes_in_study, stored.sop_class_uid)
        return AddResult(AddOutcome.REPLACED, replaced_key=existing.blob_key)

    @staticmethod
    def _add_sop_class(conn: Connection, study_pk: int, listed: str, sop_class: str) -> None:
        """Keep SOPClassesInStudy (0008,0062) complete; called under the study's row lock."""
        classes = split(listed)
        if sop_class not in classes:
            conn.execute(
                update(studies)
                .where(studies.c.pk == study_pk)
                .values(sop_classes_in_study="\\".join(sorted([*classes, sop_class])))
            )


def _instance_row(inst: NewInstance) -> dict[str, Any]:
    """The columns an instance's object determines (all but its place in the hierarchy)."""
    pixels, stored = inst.pixels, inst.instance
    frames = None
    if pixels.frames is not None:
        frames = _dumps([[n for r in frame for n in r] for frame in pixels.frames])
    return {
        **column_values(INSTANCE, inst.instance_attributes),
        "sop_instance_uid": stored.sop_instance_uid,
        "sop_class_uid": stored.sop_class_uid,
        "transfer_syntax_uid": stored.transfer_syntax_uid,
        "blob_key": stored.blob_key,
        "size": stored.size,
        "number_of_frames": pixels.number_of_frames,
        "attributes": _dumps(inst.instance_attributes),
        "metadata": inst.metadata,
        "frames": frames,
        "frames_error": pixels.frames_error,
        "bulk_data": _dumps({k: list(v) for k, v in pixels.bulk_data.items()}),
    }
