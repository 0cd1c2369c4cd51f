"""The change log port on SQL: entries read in sequence order, each with the state of its
instance now (joined from the instances) and, when asked, that instance's stored metadata."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, Select, bindparam, case, func, literal, null, select

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.models import changes, instances, series, studies
from dicomweb_server.index.sql.scope import limited
from dicomweb_server.services.context import StudyScope
from dicomweb_server.services.ports.changes import CURRENT, DELETED, REPLACED, Change

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
            m: _statement(None, m)
            .where(changes.c.seq > bindparam("after"))
            .order_by(changes.c.seq)
            .limit(bindparam("limit"))
            for m in (False, True)
        }
        self._newest = select(func.max(changes.c.seq))

    def read(
        self, after: int, limit: int, scope: StudyScope | None, with_metadata: bool = False
    ) -> list[Change]:
        if scope is None:
            stmt = self._reads[with_metadata]
        else:
            stmt = (
                _statement(scope, with_metadata)
                .where(changes.c.seq > bindparam("after"))
                .order_by(changes.c.seq)
                .limit(bindparam("limit"))
            )
        with self._db.connect() as conn:
            rows = conn.execute(stmt, {"after": after, "limit": limit}).all()
        return [_change(r) for r in rows]

    def latest(self, scope: StudyScope | None) -> Change | None:
        stmt = _statement(scope, False).order_by(changes.c.seq.desc()).limit(1)
        with self._db.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _change(row)

    def newest(self) -> int:
        with self._db.connect() as conn:
            return int(conn.execute(self._newest).scalar_one_or_none() or 0)
