"""The corrections port on SQL: a study's corrected copies indexed in one transaction under
the study's row lock (the lock every store into it takes first), so a reader sees the study
as it was or as corrected, never half of it."""

from __future__ import annotations

import time
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.entities import STUDY, column_values
from dicomweb_server.index.sql.models import instances, original_versions, retired_objects, studies
from dicomweb_server.index.sql.scope import limited
from dicomweb_server.index.sql.store import instance_row, write_changes
from dicomweb_server.services.context import StudyScope
from dicomweb_server.services.ports.corrections import Corrected, Original
from dicomweb_server.services.ports.store import NewInstance

_CHUNK = 500


class SqlCorrectionIndex:
    def __init__(self, db: Database) -> None:
        self._db = db

    def studies_of(self, patient_id: str, scope: StudyScope | None) -> list[str]:
        stmt = limited(
            select(studies.c.study_instance_uid).where(studies.c.patient_id == patient_id),
            scope,
            with_series=False,
        )
        with self._db.connect() as conn:
            return sorted(str(u) for u in conn.execute(stmt).scalars())

    def study_attributes(self, study_uid: str, scope: StudyScope | None) -> dict[str, Any] | None:
        stmt = limited(
            select(studies.c.attributes).where(studies.c.study_instance_uid == study_uid),
            scope,
            with_series=False,
        )
        with self._db.connect() as conn:
            found = conn.execute(stmt).scalar()
        if found is None:
            return None
        return found if isinstance(found, dict) else orjson.loads(found)

    def correct(self, study_uid: str, copies: list[tuple[str, NewInstance]]) -> Corrected:
        now = time.time()
        unused: list[str] = []
        with self._db.writing() as conn:
            locked = select(studies.c.pk).where(studies.c.study_instance_uid == study_uid)
            if self._db.dialect == "postgresql":
                locked = locked.with_for_update()
            study_pk = conn.execute(locked).scalar()
            current = {}
            if study_pk is not None:
                uids = [c.instance.sop_instance_uid for _, c in copies]
                for start in range(0, len(uids), _CHUNK):
                    rows = conn.execute(
                        select(
                            instances.c.pk,
                            instances.c.sop_instance_uid,
                            instances.c.blob_key,
                            instances.c.transfer_syntax_uid,
                            instances.c.size,
                        ).where(
                            instances.c.study_pk == study_pk,
                            instances.c.sop_instance_uid.in_(uids[start : start + _CHUNK]),
                        )
                    ).all()
                    current.update({r.sop_instance_uid: r for r in rows})
            kept = _originals(conn, [c.instance.sop_instance_uid for _, c in copies])
            applied: list[NewInstance] = []
            for old_key, copy in copies:
                row = current.get(copy.instance.sop_instance_uid)
                if row is None or row.blob_key != old_key:
                    # Deleted or stored again since it was read: the newer state stands.
                    unused.append(copy.instance.blob_key)
                    continue
                conn.execute(
                    update(instances).where(instances.c.pk == row.pk).values(**instance_row(copy))
                )
                if copy.instance.sop_instance_uid in kept:
                    conn.execute(insert(retired_objects).values(blob_key=old_key, retired_at=now))
                else:
                    conn.execute(
                        insert(original_versions).values(
                            sop_uid=copy.instance.sop_instance_uid,
                            blob_key=old_key,
                            transfer_syntax_uid=row.transfer_syntax_uid,
                            size=row.size,
                            replaced_at=now,
                        )
                    )
                applied.append(copy)
            if applied:
                attributes = applied[0].study_attributes
                conn.execute(
                    update(studies)
                    .where(studies.c.pk == study_pk)
                    .values(
                        **column_values(STUDY, attributes),
                        attributes=orjson.dumps(attributes).decode("utf-8"),
                    )
                )
                write_changes(
                    conn,
                    self._db.dialect,
                    [
                        {
                            "at": now,
                            "action": "update",
                            "study_uid": study_uid,
                            "series_uid": c.instance.series_uid,
                            "sop_uid": c.instance.sop_instance_uid,
                            "blob_key": c.instance.blob_key,
                        }
                        for c in applied
                    ],
                )
        return Corrected(len(applied), unused)

    def originals(self, sop_uids: list[str]) -> dict[str, Original]:
        with self._db.connect() as conn:
            return _originals(conn, sop_uids)


def _originals(conn: Connection, sop_uids: list[str]) -> dict[str, Original]:
    found: dict[str, Original] = {}
    for start in range(0, len(sop_uids), _CHUNK):
        rows = conn.execute(
            select(original_versions).where(
                original_versions.c.sop_uid.in_(sop_uids[start : start + _CHUNK])
            )
        ).all()
        for r in rows:
            found[str(r.sop_uid)] = Original(
                str(r.blob_key), str(r.transfer_syntax_uid), int(r.size)
            )
    return found
