"""The consistency port on SQL: which objects the index points at, and the retired copies."""

from __future__ import annotations

from sqlalchemy import delete, select

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.models import (
    instances,
    original_versions,
    rejected_objects,
    retired_objects,
)


class SqlConsistencyIndex:
    def __init__(self, db: Database) -> None:
        self._db = db

    def blob_keys(self) -> set[str]:
        with self._db.connect() as conn:
            indexed = {str(k) for k in conn.execute(select(instances.c.blob_key)).scalars()}
            # Rejected objects are kept (restorable) until the purge retires them.
            kept = conn.execute(select(rejected_objects.c.blob_key)).scalars()
            originals = conn.execute(select(original_versions.c.blob_key)).scalars()
            return indexed | {str(k) for k in kept} | {str(k) for k in originals}

    def retired(self) -> dict[str, float]:
        stmt = select(retired_objects.c.blob_key, retired_objects.c.retired_at)
        with self._db.connect() as conn:
            return {str(key): float(at) for key, at in conn.execute(stmt)}

    def forget_retired(self, key: str) -> None:
        with self._db.connect() as conn, conn.begin():
            conn.execute(delete(retired_objects).where(retired_objects.c.blob_key == key))
