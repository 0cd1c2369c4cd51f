"""The reject port on SQL: a rejection is a removal (index/sql/delete.py) whose objects are
recorded as rejected instead of retired, in the same transaction."""

from __future__ import annotations

import json
import time

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Row

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.delete import remove
from dicomweb_server.index.sql.models import instances, rejected_objects, retired_objects
from dicomweb_server.services.context import StudyScope
from dicomweb_server.services.ports.delete import Deleted
from dicomweb_server.services.ports.reject import Rejected

_CHUNK = 500


class SqlRejectIndex:
    def __init__(self, db: Database) -> None:
        self._db = db

    def reject(
        self,
        study_uid: str,
        series_uid: str | None,
        sop_uid: str | None,
        scope: StudyScope | None,
        code: str,
    ) -> Deleted | None:
        with self._db.writing() as conn:
            removed = remove(conn, self._db.dialect, study_uid, series_uid, sop_uid, scope)
            if removed is None:
                return None
            labels = json.dumps(sorted(removed.labels))
            conn.execute(
                insert(rejected_objects),
                [
                    {
                        "blob_key": r.blob_key,
                        "study_uid": study_uid,
                        "series_uid": r.series_instance_uid,
                        "sop_uid": r.sop_instance_uid,
                        "code": code,
                        "rejected_at": removed.at,
                        "labels": labels,
                    }
                    for r in removed.rows
                ],
            )
        return removed.gone

    def rejected(
        self, study_uid: str, series_uid: str | None, sop_uid: str | None
    ) -> list[Rejected]:
        stmt = select(rejected_objects).where(rejected_objects.c.study_uid == study_uid)
        if series_uid is not None:
            stmt = stmt.where(rejected_objects.c.series_uid == series_uid)
        if sop_uid is not None:
            stmt = stmt.where(rejected_objects.c.sop_uid == sop_uid)
        with self._db.connect() as conn:
            rows = conn.execute(
                stmt.order_by(rejected_objects.c.rejected_at, rejected_objects.c.blob_key)
            ).all()
        return [_rejected(r) for r in rows]

    def forget(self, keys: list[str], retire: bool) -> None:
        now = time.time()
        with self._db.writing() as conn:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                # Only what is still recorded: a purge and a restore at once retire nothing
                # twice, and never an object the restore indexed.
                held = list(
                    conn.execute(
                        delete(rejected_objects)
                        .where(rejected_objects.c.blob_key.in_(chunk))
                        .returning(rejected_objects.c.blob_key)
                    ).scalars()
                )
                if retire:
                    # Never an object an instance row points at (one restored before a
                    # crash kept its record).
                    indexed = set(
                        conn.execute(
                            select(instances.c.blob_key).where(instances.c.blob_key.in_(held))
                        ).scalars()
                    )
                    held = [k for k in held if k not in indexed]
                if retire and held:
                    conn.execute(
                        insert(retired_objects), [{"blob_key": k, "retired_at": now} for k in held]
                    )

    def expired(self, before: float, limit: int) -> list[str]:
        stmt = (
            select(rejected_objects.c.blob_key)
            .where(rejected_objects.c.rejected_at < before)
            .order_by(rejected_objects.c.rejected_at)
            .limit(limit)
        )
        with self._db.connect() as conn:
            return [str(k) for k in conn.execute(stmt).scalars()]


def _rejected(row: Row[object]) -> Rejected:
    m = row._mapping
    return Rejected(
        blob_key=str(m["blob_key"]),
        study_uid=str(m["study_uid"]),
        series_uid=str(m["series_uid"]),
        sop_uid=str(m["sop_uid"]),
        code=str(m["code"]),
        rejected_at=float(m["rejected_at"]),
        labels=frozenset(json.loads(str(m["labels"]))),
    )
