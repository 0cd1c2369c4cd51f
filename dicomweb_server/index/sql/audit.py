"""The audit port on SQL: the audit_events table (one row a message)."""

from __future__ import annotations

import orjson
from sqlalchemy import insert, select

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.models import audit_events
from dicomweb_server.services.audit import AuditMessage, as_dict
from dicomweb_server.services.ports.audit import KeptAuditMessage


class SqlAuditLog:
    name = "table"

    def __init__(self, db: Database) -> None:
        self._db = db

    def write(self, messages: list[AuditMessage]) -> None:
        rows = [
            {
                "at": m.at,
                "event_id": m.event.code,
                "outcome": m.outcome,
                "requestor": m.requestor,
                # Space-separated with a space at each end: one LIKE finds a study.
                "studies": " " + " ".join(m.studies) + " " if m.studies else None,
                "message": orjson.dumps(as_dict(m)).decode("utf-8"),
            }
            for m in messages
        ]
        with self._db.writing() as conn:
            conn.execute(insert(audit_events), rows)

    def events(
        self, after: int, since: float | None, study: str | None, limit: int
    ) -> list[KeptAuditMessage]:
        stmt = select(audit_events.c.pk, audit_events.c.at, audit_events.c.message).where(
            audit_events.c.pk > after
        )
        if since is not None:
            stmt = stmt.where(audit_events.c.at >= since)
        if study is not None:
            stmt = stmt.where(audit_events.c.studies.contains(f" {study} ", autoescape=True))
        stmt = stmt.order_by(audit_events.c.pk).limit(limit)
        with self._db.connect() as conn:
            rows = conn.execute(stmt).all()
        return [KeptAuditMessage(int(r.pk), float(r.at), orjson.loads(r.message)) for r in rows]

    def close(self) -> None:
        pass
