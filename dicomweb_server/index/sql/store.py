"""The store port on SQL: a batch of instances indexed in one transaction, aggregates kept
exact under concurrent stores into the same study."""

from __future__ import annotations

import time
from typing import Any

import orjson
from sqlalchemy import Row, Table, bindparam, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.entities import INSTANCE, SERIES, STUDY, column_values
from dicomweb_server.index.sql.labels import add_labels, has_label
from dicomweb_server.index.sql.models import (
    changes,
    instances,
    retired_objects,
    series,
    studies,
)
from dicomweb_server.index.sql.search import split
from dicomweb_server.services.errors import Unavailable
from dicomweb_server.services.ports import AddOutcome, AddResult, NewInstance


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


class SqlStoreIndex:
    """Instances indexed in batches, each batch one transaction.

    The instances of one series take two statements plus one per instance: the study and
    the series are upserted with their counts raised by the group's size (the upsert locks
    their rows until the commit), then each instance row is inserted. Instances that cannot
    be added (a duplicate, a UID already elsewhere, a study outside the caller's labels) are
    taken back from the counts with compensating statements in the same transaction, so the
    others of the batch are kept.

    A study or series row exists only while it holds an instance (the invariant this relies
    on): an upsert that returns the count it added has just created the row.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        # Statements built once: SQLAlchemy then reuses their compiled SQL for every call.
        insert_of = pg_insert if db.dialect == "postgresql" else sqlite_insert
        # The upserts add the count the row would be inserted with (excluded) to the row's.
        new_study, new_series = insert_of(studies), insert_of(series)
        self._upsert_study = new_study.on_conflict_do_update(
            index_elements=[studies.c.study_instance_uid],
            set_={
                "number_of_instances": studies.c.number_of_instances
                + new_study.excluded.number_of_instances,
                # An arrival starts the study's quiet period again (stable-study events).
                "last_arrival": new_study.excluded.last_arrival,
                "stable_announced": 0,
            },
        ).returning(
            studies.c.pk,
            studies.c.number_of_instances,
            studies.c.modalities_in_study,
            studies.c.sop_classes_in_study,
        )
        self._upsert_series = new_series.on_conflict_do_update(
            index_elements=[series.c.series_instance_uid],
            set_={
                "number_of_instances": series.c.number_of_instances
                + new_series.excluded.number_of_instances,
                "last_arrival": new_series.excluded.last_arrival,
                "stable_announced": 0,
            },
        ).returning(series.c.pk, series.c.study_pk, series.c.number_of_instances, series.c.modality)
        self._insert_instance = (
            insert_of(instances)
            .on_conflict_do_nothing(index_elements=[instances.c.sop_instance_uid])
            .returning(instances.c.pk)
        )
        self._existing_instance = select(
            instances.c.pk, instances.c.series_pk, instances.c.blob_key
        ).where(instances.c.sop_instance_uid == bindparam("uid"))

    def add_instances(self, batch: list[NewInstance], replace: bool = False) -> list[AddResult]:
        """Index the batch in one transaction, a series at a time in study and series order
        (two batches then lock the rows they share in the same order and never deadlock);
        the results in the batch's order."""
        groups: dict[tuple[str, str, frozenset[str] | None], list[int]] = {}
        for i, inst in enumerate(batch):
            stored = inst.instance
            groups.setdefault((stored.study_uid, stored.series_uid, inst.within), []).append(i)
        results: dict[int, AddResult] = {}
        with self._db.writing() as conn:
            for key in sorted(groups, key=lambda k: (k[0], k[1])):
                members = groups[key]
                added = self._add_series(conn, [batch[i] for i in members], replace)
                results.update(zip(members, added, strict=True))
            ordered = [results[i] for i in range(len(batch))]
            self._log_changes(conn, batch, ordered)
        return ordered

    def _log_changes(
        self, conn: Connection, batch: list[NewInstance], results: list[AddResult]
    ) -> None:
        """The change log's entries of the batch, in its transaction: a create per instance
        stored, an update per instance replaced. Last, so the lock below is held briefly."""
        now = time.time()
        rows = [
            {
                "at": now,
                "action": "create" if r.outcome is AddOutcome.STORED else "update",
                "study_uid": inst.instance.study_uid,
                "series_uid": inst.instance.series_uid,
                "sop_uid": inst.instance.sop_instance_uid,
                "blob_key": inst.instance.blob_key,
            }
            for inst, r in zip(batch, results, strict=True)
            if r.outcome in (AddOutcome.STORED, AddOutcome.REPLACED)
        ]
        if rows:
            write_changes(conn, self._db.dialect, rows)

    def _add_series(
        self, conn: Connection, group: list[NewInstance], replace: bool
    ) -> list[AddResult]:
        """Instances of one series (and one caller's reach): the study and the series are
        upserted once with the group's count, then each instance row is inserted; what did
        not go in is taken back from the counts at the end."""
        first, n = group[0], len(group)
        study = self._study(conn, first, n)
        study_created = study.number_of_instances == n
        if (
            first.within is not None
            and not study_created
            and not has_label(conn, study.pk, first.within)
        ):
            self._undo(conn, studies, study.pk, n, study_created)
            message = f"study {first.instance.study_uid} is outside the studies this caller may see"
            return [AddResult(AddOutcome.REFUSED, message)] * n
        row = self._series(conn, first, study.pk, n)
        series_created = row.number_of_instances == n
        if row.study_pk != study.pk:
            self._undo(conn, series, row.pk, n, series_created)
            self._undo(conn, studies, study.pk, n, study_created)
            message = (
                f"Series Instance UID {first.instance.series_uid} already belongs to another study"
            )
            return [AddResult(AddOutcome.CONFLICT, message)] * n
        results = []
        classes = set(split(study.sop_classes_in_study))
        labels: set[str] = set()
        for inst in group:
            existing = self._instance(conn, inst, study.pk, row.pk)
            if existing is None:
                result = AddResult(AddOutcome.STORED)
                labels |= inst.labels
            else:
                result = self._add_existing(conn, inst, replace, row.pk, existing)
            if result.outcome in (AddOutcome.STORED, AddOutcome.REPLACED):
                classes.add(inst.instance.sop_class_uid)
            results.append(result)
        added = sum(r.outcome is AddOutcome.STORED for r in results)
        if added < n:
            # Rows made for this group alone go when nothing of it went in.
            self._undo(conn, series, row.pk, n - added, series_created and added == 0)
            self._undo(conn, studies, study.pk, n - added, study_created and added == 0)
        if labels:
            add_labels(conn, study.pk, labels)
        new_series = series_created and added > 0
        self._study_lists(conn, study, row.modality if new_series else None, new_series, classes)
        return results

    def _study_lists(
        self,
        conn: Connection,
        study: Row[Any, Any, Any, Any],
        modality: str | None,
        new_series: bool,
        classes: set[str],
    ) -> None:
        """The study's aggregates that are lists, read under its row lock: a new series
        counts and adds its `modality` (as the upsert stored it) to ModalitiesInStudy
        (0008,0061); SOPClassesInStudy (0008,0062) takes the classes stored."""
        values: dict[str, Any] = {}
        if new_series:
            values["number_of_series"] = studies.c.number_of_series + 1
            listed = split(study.modalities_in_study)
            if modality and modality not in listed:
                values["modalities_in_study"] = "\\".join(sorted([*listed, modality]))
        if classes != set(split(study.sop_classes_in_study)):
            values["sop_classes_in_study"] = "\\".join(sorted(classes))
        if values:
            conn.execute(update(studies).where(studies.c.pk == study.pk).values(**values))

    def _study(self, conn: Connection, inst: NewInstance, count: int) -> Row[Any, Any, Any, Any]:
        """The study row upserted with `count` more instances, locked for this transaction:
        the lock serialises every store into this study, so its aggregates are read and
        written by one transaction at a time (PostgreSQL; SQLite serialises all writers with
        BEGIN IMMEDIATE)."""
        return conn.execute(
            self._upsert_study,
            {
                **column_values(STUDY, inst.study_attributes),
                "study_instance_uid": inst.instance.study_uid,
                "attributes": _dumps(inst.study_attributes),
                "number_of_instances": count,
                "last_arrival": time.time(),
            },
        ).one()

    def _series(
        self, conn: Connection, inst: NewInstance, study_pk: int, count: int
    ) -> Row[Any, Any, Any, Any]:
        """The series row upserted with `count` more instances; it may belong to another
        study (the caller checks)."""
        return conn.execute(
            self._upsert_series,
            {
                **column_values(SERIES, inst.series_attributes),
                "study_pk": study_pk,
                "series_instance_uid": inst.instance.series_uid,
                "attributes": _dumps(inst.series_attributes),
                "number_of_instances": count,
                "last_arrival": time.time(),
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
        row = {"series_pk": series_pk, "study_pk": study_pk, **instance_row(inst)}
        for _attempt in range(3):
            if conn.execute(self._insert_instance, row).scalar_one_or_none() is not None:
                return None
            existing = conn.execute(self._existing_instance, {"uid": uid}).first()
            if existing is not None:
                return existing
        raise Unavailable("the instance is being stored concurrently; try again shortly")

    @staticmethod
    def _undo(conn: Connection, table: Table, pk: int, count: int, created: bool) -> None:
        """Take back a study's or series' upsert: the row it made, or `count` instances it
        counted."""
        if created:
            conn.execute(delete(table).where(table.c.pk == pk))
        else:
            conn.execute(
                update(table)
                .where(table.c.pk == pk)
                .values(number_of_instances=table.c.number_of_instances - count)
            )

    def _add_existing(
        self,
        conn: Connection,
        inst: NewInstance,
        replace: bool,
        series_pk: int,
        existing: Row[Any, Any, Any],
    ) -> AddResult:
        """The outcome of storing a SOP Instance UID the index already holds."""
        stored = inst.instance
        if existing.series_pk != series_pk:
            return AddResult(
                AddOutcome.CONFLICT,
                f"SOP Instance UID {stored.sop_instance_uid} is already stored in another series",
            )
        if not replace:
            return AddResult(AddOutcome.DUPLICATE)
        conn.execute(
            update(instances).where(instances.c.pk == existing.pk).values(**instance_row(inst))
        )
        # The old copy is retired in the same transaction: kept for readers that looked it
        # up before this commit, removed by the sweep after the grace period.
        conn.execute(
            insert(retired_objects).values(blob_key=existing.blob_key, retired_at=time.time())
        )
        return AddResult(AddOutcome.REPLACED, replaced_key=existing.blob_key)


# The change log's writers' lock (any constant key; pg_advisory_xact_lock is released at the
# transaction's end) and the channel every process listens on for new entries.
CHANGES_LOCK = 0x44434D4348474553  # "DCMCHGES"
CHANGES_CHANNEL = "dicomweb_changes"
_LOCK_CHANGES = text(f"SELECT pg_advisory_xact_lock({CHANGES_LOCK})")
_NOTIFY_CHANGES = text(f"SELECT pg_notify('{CHANGES_CHANNEL}', '')")


def write_changes(conn: Connection, dialect: str, rows: list[dict[str, Any]]) -> None:
    """Add entries to the change log, as the last statements of the caller's transaction.

    On PostgreSQL, sequences in commit order: the lock is taken before the sequence and
    released only once this transaction's commit is visible, so a transaction that takes a
    later sequence commits after it (architecture notes, "The change log"); the NOTIFY is
    delivered to every listening process when (and only if) this commits. SQLite has one
    writer at a time."""
    if dialect == "postgresql":
        conn.execute(_LOCK_CHANGES)
        conn.execute(insert(changes), rows)
        conn.execute(_NOTIFY_CHANGES)
    else:
        conn.execute(insert(changes), rows)


def instance_row(inst: NewInstance) -> dict[str, Any]:
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
