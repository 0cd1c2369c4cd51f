"""The store port on SQL: a batch of instances indexed in one transaction, aggregates kept
exact under concurrent stores into the same study."""

from __future__ import annotations

import time
from typing import Any

import orjson
from sqlalchemy import Row, Table, bindparam, delete, insert, select, update
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


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


class SqlStoreIndex:
    """Instances indexed in batches, each batch one transaction.

    The common case is three statements: the study and the series are upserted with their
    counts raised (the upsert locks their rows until the commit), then the instance row is
    inserted. An instance that cannot be added (a duplicate, a UID already elsewhere, a
    study outside the caller's labels) takes back what it changed with compensating
    statements in the same transaction, so the instances before and after it in the batch
    are kept.

    A study or series row exists only while it holds an instance (the invariant this relies
    on): an upsert that returns a count of 1 has just created the row.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        # Statements built once: SQLAlchemy then reuses their compiled SQL for every call.
        insert_of = pg_insert if db.dialect == "postgresql" else sqlite_insert
        self._upsert_study = (
            insert_of(studies)
            .on_conflict_do_update(
                index_elements=[studies.c.study_instance_uid],
                set_={"number_of_instances": studies.c.number_of_instances + 1},
            )
            .returning(
                studies.c.pk,
                studies.c.number_of_instances,
                studies.c.modalities_in_study,
                studies.c.sop_classes_in_study,
            )
        )
        self._upsert_series = (
            insert_of(series)
            .on_conflict_do_update(
                index_elements=[series.c.series_instance_uid],
                set_={"number_of_instances": series.c.number_of_instances + 1},
            )
            .returning(series.c.pk, series.c.study_pk, series.c.number_of_instances)
        )
        self._insert_instance = (
            insert_of(instances)
            .on_conflict_do_nothing(index_elements=[instances.c.sop_instance_uid])
            .returning(instances.c.pk)
        )
        self._existing_instance = select(
            instances.c.pk, instances.c.series_pk, instances.c.blob_key
        ).where(instances.c.sop_instance_uid == bindparam("uid"))

    def add_instances(self, batch: list[NewInstance], replace: bool = False) -> list[AddResult]:
        """Index the batch in one transaction, in study and series order (two batches then
        lock the rows they share in the same order and never deadlock); the results in the
        batch's order."""
        results: dict[int, AddResult] = {}
        order = sorted(
            range(len(batch)),
            key=lambda i: (batch[i].instance.study_uid, batch[i].instance.series_uid),
        )
        with self._db.writing() as conn:
            for i in order:
                results[i] = self._add(conn, batch[i], replace)
        return [results[i] for i in range(len(batch))]

    def _add(self, conn: Connection, inst: NewInstance, replace: bool) -> AddResult:
        """Its study and series (created or counted), its row, then the study's lists."""
        stored = inst.instance
        study = self._study(conn, inst)
        study_created = study.number_of_instances == 1
        if (
            inst.within is not None
            and not study_created
            and not has_label(conn, study.pk, inst.within)
        ):
            self._undo(conn, studies, study.pk, study_created)
            return AddResult(
                AddOutcome.REFUSED,
                f"study {stored.study_uid} is outside the studies this caller may see",
            )
        row = self._series(conn, inst, study.pk)
        series_created = row.number_of_instances == 1
        existing = None
        if row.study_pk == study.pk:
            existing = self._instance(conn, inst, study.pk, row.pk)
            if existing is None:
                self._stored(conn, inst, study, series_created)
                return AddResult(AddOutcome.STORED)
        self._undo(conn, series, row.pk, series_created)
        self._undo(conn, studies, study.pk, study_created)
        if existing is None:
            return AddResult(
                AddOutcome.CONFLICT,
                f"Series Instance UID {stored.series_uid} already belongs to another study",
            )
        return self._add_existing(conn, inst, replace, study, row.pk, existing)

    def _stored(
        self, conn: Connection, inst: NewInstance, study: Row[Any, Any, Any, Any], new_series: bool
    ) -> None:
        """The study's labels and lists once its new instance is in: a new series counts
        and adds its Modality to ModalitiesInStudy (0008,0061), a new SOP Class goes into
        SOPClassesInStudy (0008,0062); both lists read under the study's row lock."""
        if inst.labels:
            add_labels(conn, study.pk, inst.labels)
        values: dict[str, Any] = {}
        if new_series:
            values["number_of_series"] = studies.c.number_of_series + 1
            modality = column_values(SERIES, inst.series_attributes).get("modality")
            listed = split(study.modalities_in_study)
            if modality and modality not in listed:
                values["modalities_in_study"] = "\\".join(sorted([*listed, modality]))
        classes = _with_sop_class(study.sop_classes_in_study, inst.instance.sop_class_uid)
        if classes is not None:
            values["sop_classes_in_study"] = classes
        if values:
            conn.execute(update(studies).where(studies.c.pk == study.pk).values(**values))

    def _study(self, conn: Connection, inst: NewInstance) -> Row[Any, Any, Any, Any]:
        """The study row upserted with one more instance, locked for this transaction: the
        lock serialises every store into this study, so its aggregates are read and written
        by one transaction at a time (PostgreSQL; SQLite serialises all writers with BEGIN
        IMMEDIATE)."""
        return conn.execute(
            self._upsert_study,
            {
                **column_values(STUDY, inst.study_attributes),
                "study_instance_uid": inst.instance.study_uid,
                "attributes": _dumps(inst.study_attributes),
                "number_of_instances": 1,
            },
        ).one()

    def _series(self, conn: Connection, inst: NewInstance, study_pk: int) -> Row[Any, Any, Any]:
        """The series row upserted with one more instance; it may belong to another study
        (the caller checks)."""
        return conn.execute(
            self._upsert_series,
            {
                **column_values(SERIES, inst.series_attributes),
                "study_pk": study_pk,
                "series_instance_uid": inst.instance.series_uid,
                "attributes": _dumps(inst.series_attributes),
                "number_of_instances": 1,
            },
        ).one()

    def _instance(
        self, conn: Connection, inst: NewInstance, study_pk: int, series_pk: int
    ) -> Row[Any, Any, Any] | None:
        """Insert the instance row; the row already holding its UID, if one does.

        A UID another transaction committed between our insert and our look (a delete)
        makes the look find nothing: insert again, so the outcome is the one the serial
        order would give, never a duplicate of an instance the request cannot retrieve."""
        uid = inst.instance.sop_instance_uid
        row = {"series_pk": series_pk, "study_pk": study_pk, **_instance_row(inst)}
        for _attempt in range(3):
            if conn.execute(self._insert_instance, row).scalar_one_or_none() is not None:
                return None
            existing = conn.execute(self._existing_instance, {"uid": uid}).first()
            if existing is not None:
                return existing
        raise Unavailable("the instance is being stored concurrently; try again shortly")

    @staticmethod
    def _undo(conn: Connection, table: Table, pk: int, created: bool) -> None:
        """Take back a study's or series' upsert: the row it made, or the instance it
        counted."""
        if created:
            conn.execute(delete(table).where(table.c.pk == pk))
        else:
            conn.execute(
                update(table)
                .where(table.c.pk == pk)
                .values(number_of_instances=table.c.number_of_instances - 1)
            )

    def _add_existing(
        self,
        conn: Connection,
        inst: NewInstance,
        replace: bool,
        study: Row[Any, Any, Any, Any],
        series_pk: int,
        existing: Row[Any, Any, Any],
    ) -> AddResult:
        """The outcome of storing a SOP Instance UID the index already holds (the counts
        are taken back already)."""
        stored = inst.instance
        if existing.series_pk != series_pk:
            return AddResult(
                AddOutcome.CONFLICT,
                f"SOP Instance UID {stored.sop_instance_uid} is already stored in another series",
            )
        if not replace:
            return AddResult(AddOutcome.DUPLICATE)
        conn.execute(
            update(instances).where(instances.c.pk == existing.pk).values(**_instance_row(inst))
        )
        # The old copy is retired in the same transaction: kept for readers that looked it
        # up before this commit, removed by the sweep after the grace period.
        conn.execute(
            insert(retired_objects).values(blob_key=existing.blob_key, retired_at=time.time())
        )
        classes = _with_sop_class(study.sop_classes_in_study, stored.sop_class_uid)
        if classes is not None:
            conn.execute(
                update(studies).where(studies.c.pk == study.pk).values(sop_classes_in_study=classes)
            )
        return AddResult(AddOutcome.REPLACED, replaced_key=existing.blob_key)


def _with_sop_class(listed: str, sop_class: str) -> str | None:
    """SOPClassesInStudy (0008,0062) with `sop_class` added; None when it is listed already."""
    classes = split(listed)
    if sop_class in classes:
        return None
    return "\\".join(sorted([*classes, sop_class]))


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
