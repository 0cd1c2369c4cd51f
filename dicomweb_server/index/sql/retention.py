"""The retention port on SQL: each batch is one DELETE of the oldest rows (by primary key,
which follows time in every one of these tables) older than the cut, and a lease row that a
conditional update takes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.models import (
    audit_events,
    auth_failures,
    changes,
    deliveries,
    leases,
    share_sessions,
    share_uses,
)
from dicomweb_server.services.ports.retention import (
    AUDIT,
    CHANGES,
    DELIVERIES,
    FAILURES,
    SESSIONS,
    SHARE_USES,
)
from dicomweb_server.services.ports.webhooks import DELIVERED


def _kinds() -> dict[str, tuple[Table, Any, Any]]:
    """Per kind: the table, its key column, and the condition of a row to prune given the
    cut (`before`)."""
    return {
        AUDIT: (audit_events, audit_events.c.pk, lambda b: audit_events.c.at < b),
        CHANGES: (changes, changes.c.seq, lambda b: changes.c.at < b),
        DELIVERIES: (
            deliveries,
            deliveries.c.pk,
            lambda b: and_(deliveries.c.state == DELIVERED, deliveries.c.done_at < b),
        ),
        SHARE_USES: (share_uses, share_uses.c.pk, lambda b: share_uses.c.at < b),
        FAILURES: (auth_failures, auth_failures.c.pk, lambda b: auth_failures.c.at < b),
        SESSIONS: (
            share_sessions,
            share_sessions.c.session_id,
            lambda b: share_sessions.c.expires_at < b,
        ),
    }


class SqlRetentionIndex:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._kinds = _kinds()

    def take_lease(self, name: str, owner: str, now: float, until: float) -> bool:
        with self._db.writing() as conn:
            taken = conn.execute(
                update(leases)
                .where(leases.c.name == name, (leases.c.until < now) | (leases.c.owner == owner))
                .values(owner=owner, until=until)
            ).rowcount
            if taken:
                return True
            exists = conn.execute(select(leases.c.name).where(leases.c.name == name)).first()
            if exists is not None:
                return False
        try:
            with self._db.writing() as conn:
                conn.execute(insert(leases).values(name=name, owner=owner, until=until))
        except IntegrityError:
            return False  # another process made the row first: it holds the lease
        return True

    def release(self, name: str, owner: str) -> None:
        with self._db.writing() as conn:
            conn.execute(
                update(leases)
                .where(leases.c.name == name, leases.c.owner == owner)
                .values(until=0.0)
            )

    def prune(self, kind: str, before: float, limit: int) -> int:
        table, key, old = self._kinds[kind]
        oldest = select(key).where(old(before)).order_by(key).limit(limit)
        with self._db.writing() as conn:
            # The keys first, then the delete: PostgreSQL and SQLite alike, and a batch's
            # rows are locked for one short statement.
            keys = list(conn.execute(oldest).scalars())
            if not keys:
                return 0
            conn.execute(delete(table).where(key.in_(keys)))
        return len(keys)

    def count(self, kind: str) -> int:
        table = self._kinds[kind][0]
        with self._db.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
