"""The access port on SQL: the api_keys table."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Row, bindparam, insert, select, update

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.models import api_keys
from dicomweb_server.services.ports.access import StoredKey

# Key rows kept for the event loop's reads at most (a guessed id is never kept).
_KEPT = 1000


def _key(row: Row[Any]) -> StoredKey:
    return StoredKey(
        row.key_id,
        row.name,
        row.secret_sha256,
        frozenset(str(row.scopes).split()),
        float(row.created_at),
        row.expires_at,
        row.revoked_at,
        row.last_used_at,
        None if row.labels is None else frozenset(orjson.loads(row.labels)),
    )


def _by_id() -> Any:
    return select(api_keys).where(api_keys.c.key_id == bindparam("key_id"))


class SqlKeyIndex:
    def __init__(self, db: Database) -> None:
        self._db = db
        # Rows read on the event loop, with the database version they were read at: still
        # the row while no commit has happened since (a revocation in any process is one).
        self._read: dict[str, tuple[int, StoredKey]] = {}

    def add_key(self, key: StoredKey) -> None:
        with self._db.writing() as conn:
            conn.execute(
                insert(api_keys).values(
                    key_id=key.key_id,
                    name=key.name,
                    secret_sha256=key.secret_sha256,
                    scopes=" ".join(sorted(key.scopes)),
                    created_at=key.created_at,
                    expires_at=key.expires_at,
                    labels=None
                    if key.labels is None
                    else orjson.dumps(sorted(key.labels)).decode("utf-8"),
                )
            )

    def key(self, key_id: str) -> StoredKey | None:
        version = self._db.version()
        if version is not None:
            known = self._read.get(key_id)
            if known is not None and known[0] == version:
                return known[1]
        # Through Database.rows: once a commit anywhere changed the version, the next
        # request reads the row again (the audit writer commits several times a second).
        rows = self._db.rows("api key by id", _by_id, {"key_id": key_id})
        found = _key(rows[0]) if rows else None
        if version is not None and found is not None:
            if len(self._read) >= _KEPT:
                self._read.clear()
            self._read[key_id] = (version, found)
        return found

    def keys(self) -> list[StoredKey]:
        with self._db.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
        return [_key(row) for row in rows]

    def revoke_key(self, key_id: str, at: float) -> bool:
        with self._db.writing() as conn:
            done = conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
        return bool(done.rowcount)

    def key_used(self, key_id: str, at: float) -> None:
        with self._db.writing() as conn:
            conn.execute(
                update(api_keys).where(api_keys.c.key_id == key_id).values(last_used_at=at)
            )
