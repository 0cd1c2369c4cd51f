"""The consumer cursors on SQL: a lease taken with a conditional update, the cursor moved
only by the lease holder."""

from __future__ import annotations

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.models import changes, consumer_cursors


class SqlConsumerCursors:
    def __init__(self, db: Database) -> None:
        self._db = db

    def claim(self, name: str, owner: str, now: float, lease_seconds: float) -> int | None:
        row = consumer_cursors.c
        with self._db.writing() as conn:
            taken = conn.execute(
                update(consumer_cursors)
                .where(row.name == name, or_(row.owner == owner, row.leased_until < now))
                .values(owner=owner, leased_until=now + lease_seconds)
                .returning(row.seq)
            ).scalar()
            if taken is not None:
                return int(taken)
            exists = conn.execute(select(row.seq).where(row.name == name)).scalar()
            if exists is not None:
                return None
            newest = conn.execute(select(func.coalesce(func.max(changes.c.seq), 0))).scalar()
            insert_of = pg_insert if self._db.dialect == "postgresql" else sqlite_insert
            made = conn.execute(
                insert_of(consumer_cursors)
                .values(
                    name=name, seq=int(newest or 0), owner=owner, leased_until=now + lease_seconds
                )
                .on_conflict_do_nothing(index_elements=[row.name])
                .returning(row.seq)
            ).scalar()
            if made is None:
                return None  # another process saw it first and holds it
            return int(newest or 0)

    def advance(self, name: str, owner: str, seq: int) -> bool:
        row = consumer_cursors.c
        with self._db.writing() as conn:
            moved = conn.execute(
                update(consumer_cursors)
                .where(row.name == name, row.owner == owner, row.seq < seq)
                .values(seq=seq)
            )
            return bool(moved.rowcount)
