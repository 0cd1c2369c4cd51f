"""The failure-count port on SQL: a row per failure and subject, counted by every process."""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.models import auth_failures


class SqlFailureLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    def failed(self, subjects: list[str], at: float, window: float) -> None:
        with self._db.writing() as conn:
            # What these subjects failed more than a window ago counts no more (other
            # subjects' rows go with the retention's pruning).
            conn.execute(
                delete(auth_failures).where(
                    auth_failures.c.subject.in_(subjects), auth_failures.c.at <= at - window
                )
            )
            conn.execute(insert(auth_failures), [{"subject": s[:160], "at": at} for s in subjects])

    def recent(self, subject: str, since: float) -> tuple[int, float | None]:
        with self._db.connect() as conn:
            count, oldest = conn.execute(
                select(func.count(), func.min(auth_failures.c.at)).where(
                    auth_failures.c.subject == subject[:160], auth_failures.c.at > since
                )
            ).one()
        return int(count), None if oldest is None else float(oldest)
