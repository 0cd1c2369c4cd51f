"""The change log port on SQL: entries read in sequence order, each with the state of its
instance now (joined from the instances) and, when asked, that instance's stored metadata."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, Select, bindparam, case, func, literal, null, select, update

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.models import changes, instances, series, studies
from dicomweb_server.index.sql.scope import limited
from dicomweb_server.index.sql.store import write_changes
from dicomweb_server.services.context import StudyScope
from dicomweb_server.services.ports.changes import (
    ACTIONS,
    CURRENT,
    DELETED,
    REPLACED,
    SERIES_STABLE,
    STUDY_STABLE,
    Change,
)

_STATE = case(
    (changes.c.sop_uid.is_(None), literal(CURRENT)),
    (instances.c.pk.is_(None), literal(DELETED)),
    (instances.c.blob_key == changes.c.blob_key, literal(CURRENT)),
    else_=literal(REPLACED),
)
_COLUMNS = (
    changes.c.seq,
    changes.c.at,
    changes.c.action,
    changes.c.study_uid,
    changes.c.series_uid,
    changes.c.sop_uid,
    _STATE.label("state"),
)


def _statement(scope: StudyScope | None, with_metadata: bool) -> Select[Any]:
    source = changes.outerjoin(instances, instances.c.sop_instance_uid == changes.c.sop_uid)
    if scope is not None:
        # The scope's clause is over the studies (and series) of the entries.
        source = source.join(studies, studies.c.study_instance_uid == changes.c.study_uid)
        if scope.series_uids is not None:
            source = source.join(series, series.c.series_instance_uid == changes.c.series_uid)
    metadata = instances.c.metadata if with_metadata else null()
    stmt = select(*_COLUMNS, metadata.label("metadata")).select_from(source)
    return limited(stmt, scope, with_series=True)


def _read(stmt: Select[Any], instances_only: bool) -> Select[Any]:
    stmt = stmt.where(changes.c.seq > bindparam("after"))
    if instances_only:
        stmt = stmt.where(changes.c.action.in_(sorted(ACTIONS)))
    return stmt.order_by(changes.c.seq).limit(bindparam("limit"))


def _change(row: Row[Any]) -> Change:
    return Change(
        sequence=row.seq,
        timestamp=row.at,
        action=row.action,
        study_uid=row.study_uid,
        series_uid=row.series_uid,
        sop_uid=row.sop_uid,
        state=row.state,
        metadata=row.metadata,
    )


class SqlChangeLog:
    def __init__(self, db: Database) -> None:
        self._db = db
        # The unscoped statements, built once (the live streams read with them all the time).
        self._reads = {
            (m, i): _read(_statement(None, m), i) for m in (False, True) for i in (False, True)
        }
        self._newest = select(func.max(changes.c.seq))

    def read(
        self,
        after: int,
        limit: int,
        scope: StudyScope | None,
        with_metadata: bool = False,
        instances_only: bool = False,
    ) -> list[Change]:
        if scope is None:
            stmt = self._reads[with_metadata, instances_only]
        else:
            stmt = _read(_statement(scope, with_metadata), instances_only)
        with self._db.connect() as conn:
            rows = conn.execute(stmt, {"after": after, "limit": limit}).all()
        return [_change(r) for r in rows]

    def latest(self, scope: StudyScope | None, instances_only: bool = False) -> Change | None:
        stmt = _statement(scope, False).order_by(changes.c.seq.desc()).limit(1)
        if instances_only:
            stmt = stmt.where(changes.c.action.in_(sorted(ACTIONS)))
        with self._db.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _change(row)

    def newest(self) -> int:
        with self._db.connect() as conn:
            return int(conn.execute(self._newest).scalar_one_or_none() or 0)

    def announce_stable(self, cutoff: float, now: float) -> int:
        """Mark every series and study whose last instance arrived before `cutoff` and that
        was not announced yet, and log a series-stable or study-stable entry for each, in
        one transaction. The marking is a conditional update: two processes never announce
        the same arrival twice (the second's update finds the row already marked)."""
        with self._db.writing() as conn:
            marked_series = conn.execute(
                update(series)
                .where(series.c.stable_announced == 0, series.c.last_arrival < cutoff)
                .values(stable_announced=1)
                .returning(series.c.series_instance_uid, series.c.study_pk)
            ).all()
            marked_studies = conn.execute(
                update(studies)
                .where(studies.c.stable_announced == 0, studies.c.last_arrival < cutoff)
                .values(stable_announced=1)
                .returning(studies.c.study_instance_uid)
            ).all()
            if not marked_series and not marked_studies:
                return 0
            pks = sorted({r.study_pk for r in marked_series})
            study_of = dict(
                conn.execute(
                    select(studies.c.pk, studies.c.study_instance_uid).where(studies.c.pk.in_(pks))
                ).all()
            )
            entry = {"at": now, "sop_uid": None, "blob_key": None}
            rows = [
                {
                    **entry,
                    "action": SERIES_STABLE,
                    "study_uid": study_of[r.study_pk],
                    "series_uid": r.series_instance_uid,
                }
                for r in sorted(marked_series, key=lambda r: (study_of[r.study_pk], r[0]))
            ] + [
                {**entry, "action": STUDY_STABLE, "study_uid": r[0], "series_uid": None}
                for r in sorted(marked_studies)
            ]
            write_changes(conn, self._db.dialect, rows)
        return len(rows)
