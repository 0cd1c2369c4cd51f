"""The label port on SQL: the access-control labels of each study (study_labels)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.models import studies, study_labels


def add_labels(conn: Connection, study_pk: int, labels: Iterable[str]) -> None:
    """Give the study these labels (those it has already are kept once)."""
    rows = [{"study_pk": study_pk, "label": label} for label in sorted(set(labels))]
    if not rows:
        return
    insert_of = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert_of(study_labels).on_conflict_do_nothing(), rows)


def has_label(conn: Connection, study_pk: int, labels: frozenset[str]) -> bool:
    """Whether the study carries one of `labels`."""
    if not labels:
        return False
    found = conn.execute(
        select(study_labels.c.label)
        .where(study_labels.c.study_pk == study_pk, study_labels.c.label.in_(sorted(labels)))
        .limit(1)
    ).first()
    return found is not None


class SqlLabelIndex:
    def __init__(self, db: Database) -> None:
        self._db = db

    def labels(self, study_uid: str) -> list[str] | None:
        """The study's labels, sorted; None when no such study is stored."""
        with self._db.connect() as conn:
            pk = _study_pk(conn, study_uid)
            if pk is None:
                return None
            found = conn.execute(
                select(study_labels.c.label)
                .where(study_labels.c.study_pk == pk)
                .order_by(study_labels.c.label)
            )
            return [str(label) for (label,) in found]

    def set_labels(self, study_uid: str, labels: frozenset[str]) -> bool:
        """Make `labels` the study's labels (False when no such study is stored)."""
        with self._db.writing() as conn:
            pk = _study_pk(conn, study_uid)
            if pk is None:
                return False
            conn.execute(delete(study_labels).where(study_labels.c.study_pk == pk))
            add_labels(conn, pk, labels)
            return True


def _study_pk(conn: Connection, study_uid: str) -> int | None:
    pk = conn.execute(
        select(studies.c.pk).where(studies.c.study_instance_uid == study_uid)
    ).scalar_one_or_none()
    return None if pk is None else int(pk)
