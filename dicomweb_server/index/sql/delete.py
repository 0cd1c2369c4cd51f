"""The delete port on SQL: one transaction under the study's row lock (the lock every store
into the study takes first), so the aggregates are recounted with no store in between."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Row

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.models import (
    instances,
    original_versions,
    retired_objects,
    series,
    studies,
    study_labels,
)
from dicomweb_server.index.sql.scope import limited
from dicomweb_server.index.sql.store import write_changes
from dicomweb_server.services.context import StudyScope
from dicomweb_server.services.ports.delete import Deleted

_CHUNK = 500


class SqlDeleteIndex:
    def __init__(self, db: Database) -> None:
        self._db = db

    def delete(
        self,
        study_uid: str,
        series_uid: str | None,
        sop_uid: str | None,
        scope: StudyScope | None,
    ) -> Deleted | None:
        with self._db.writing() as conn:
            removed = remove(conn, self._db.dialect, study_uid, series_uid, sop_uid, scope)
            if removed is None:
                return None
            # The originals of corrected instances go with them.
            uids = [r.sop_instance_uid for r in removed.rows]
            originals: list[str] = []
            for start in range(0, len(uids), _CHUNK):
                originals += conn.execute(
                    delete(original_versions)
                    .where(original_versions.c.sop_uid.in_(uids[start : start + _CHUNK]))
                    .returning(original_versions.c.blob_key)
                ).scalars()
            keys = [*removed.gone.blob_keys, *originals]
            conn.execute(
                insert(retired_objects), [{"blob_key": k, "retired_at": removed.at} for k in keys]
            )
        return Deleted(removed.gone.study_uid, removed.gone.instances, keys)


@dataclass(frozen=True)
class Removed:
    gone: Deleted
    at: float
    rows: list[
        Row[Any, Any, Any, Any, Any]
    ]  # sop_instance_uid, series_instance_uid, blob_key per instance
    labels: frozenset[str]  # the study's access-control labels before the removal


def remove(
    conn: Connection,
    dialect: str,
    study_uid: str,
    series_uid: str | None,
    sop_uid: str | None,
    scope: StudyScope | None,
) -> Removed | None:
    """Take the study, series or instance (as far as `scope` lets the caller see) out of the
    index under the study's row lock: its instance rows, the aggregates recounted, a `delete`
    entry per instance in the change log. What becomes of the objects is the caller's to
    write in the same transaction."""
    found = limited(
        select(studies.c.pk).where(studies.c.study_instance_uid == study_uid),
        scope,
        with_series=False,
    )
    if dialect == "postgresql":
        found = found.with_for_update(of=studies)
    study_pk = conn.execute(found).scalar()
    if study_pk is None:
        return None
    chosen = (
        select(
            instances.c.pk,
            instances.c.series_pk,
            instances.c.sop_instance_uid,
            instances.c.blob_key,
            series.c.series_instance_uid,
        )
        .join(series, instances.c.series_pk == series.c.pk)
        .where(instances.c.study_pk == study_pk)
    )
    if series_uid is not None:
        chosen = chosen.where(series.c.series_instance_uid == series_uid)
    if sop_uid is not None:
        chosen = chosen.where(instances.c.sop_instance_uid == sop_uid)
    if scope is not None and scope.series_uids is not None:
        chosen = chosen.where(series.c.series_instance_uid.in_(sorted(scope.series_uids)))
    rows = list(conn.execute(chosen.order_by(instances.c.pk)).all())
    if not rows:
        return None
    labels = frozenset(
        conn.execute(
            select(study_labels.c.label).where(study_labels.c.study_pk == study_pk)
        ).scalars()
    )
    pks = [r.pk for r in rows]
    for start in range(0, len(pks), _CHUNK):
        conn.execute(delete(instances).where(instances.c.pk.in_(pks[start : start + _CHUNK])))
    now = time.time()
    _recount(conn, study_pk, {r.series_pk for r in rows})
    write_changes(
        conn,
        dialect,
        [
            {
                "at": now,
                "action": "delete",
                "study_uid": study_uid,
                "series_uid": r.series_instance_uid,
                "sop_uid": r.sop_instance_uid,
                "blob_key": r.blob_key,
            }
            for r in rows
        ],
    )
    gone = Deleted(study_uid, len(rows), [r.blob_key for r in rows])
    return Removed(gone, now, rows, labels)


def _recount(conn: Connection, study_pk: int, series_pks: set[int]) -> None:
    """The aggregates recounted from the rows left (PS3.4 C.3.4): a series or study left
    with no instance goes (a row exists only while it holds one)."""
    for series_pk in sorted(series_pks):
        left = conn.execute(
            select(func.count()).select_from(instances).where(instances.c.series_pk == series_pk)
        ).scalar_one()
        if left == 0:
            conn.execute(delete(series).where(series.c.pk == series_pk))
        else:
            conn.execute(
                update(series).where(series.c.pk == series_pk).values(number_of_instances=left)
            )
    left = conn.execute(
        select(func.count()).select_from(instances).where(instances.c.study_pk == study_pk)
    ).scalar_one()
    if left == 0:
        conn.execute(delete(studies).where(studies.c.pk == study_pk))
        return
    modalities = conn.execute(
        select(series.c.modality)
        .where(series.c.study_pk == study_pk, series.c.modality.is_not(None))
        .distinct()
    ).scalars()
    classes = conn.execute(
        select(instances.c.sop_class_uid).where(instances.c.study_pk == study_pk).distinct()
    ).scalars()
    number_of_series = conn.execute(
        select(func.count()).select_from(series).where(series.c.study_pk == study_pk)
    ).scalar_one()
    values: dict[str, Any] = {
        "number_of_instances": left,
        "number_of_series": number_of_series,
        "modalities_in_study": "\\".join(sorted(m for m in modalities if m)),
        "sop_classes_in_study": "\\".join(sorted(classes)),
    }
    conn.execute(update(studies).where(studies.c.pk == study_pk).values(**values))
