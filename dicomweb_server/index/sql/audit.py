"""The audit port on SQL: the audit_events table (one row a message)."""

from __future__ import annotations

import functools

import orjson
from sqlalchemy import select

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.models import audit_events
from dicomweb_server.services.audit import AuditMessage, as_dict
from dicomweb_server.services.ports.audit import KeptAuditMessage

# Rows of one INSERT (six parameters each: within SQLite's and PostgreSQL's limits).
_ROWS_A_STATEMENT = 100
_COLUMNS = ("at", "event_id", "outcome", "requestor", "studies", "message")


@functools.lru_cache(maxsize=256)
def _insert(style: str, count: int) -> str:
    """INSERT of `count` rows in the driver's parameter style (qmark or pyformat)."""
    mark = "?" if style == "qmark" else "%s"
    row = "(" + ", ".join([mark] * len(_COLUMNS)) + ")"
    return f"INSERT INTO {audit_events.name} ({', '.join(_COLUMNS)}) VALUES " + ", ".join(
        [row] * count
    )


class SqlAuditLog:
    name = "table"

    def __init__(self, db: Database) -> None:
        self._db = db

    def write(self, messages: list[AuditMessage]) -> None:
        rows = [
            (
                m.at,
                m.event.code,
                m.outcome,
                m.requestor,
                # Space-separated with a space at each end: one LIKE finds a study.
                " " + " ".join(m.studies) + " " if m.studies else None,
                orjson.dumps(as_dict(m)).decode("utf-8"),
            )
            for m in messages
        ]
        with self._db.writing() as conn:
            # Many rows a statement, through the driver: SQLAlchemy's insert coerced each
            # row's values again, and the driver's executemany steps each row on its own,
            # handing the GIL over and back per row while requests run (most of the
            # writer's cost under load).
            style = conn.dialect.paramstyle
            for start in range(0, len(rows), _ROWS_A_STATEMENT):
                chunk = rows[start : start + _ROWS_A_STATEMENT]
                values = [value for row in chunk for value in row]
                conn.exec_driver_sql(_insert(style, len(chunk)), tuple(values))

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
