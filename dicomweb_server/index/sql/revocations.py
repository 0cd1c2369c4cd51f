"""The revocation port on SQL: keys and shares revoked or expired in a time window."""

from __future__ import annotations

from sqlalchemy import and_, or_, select

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.models import api_keys, shares


class SqlRevocationIndex:
    def __init__(self, db: Database) -> None:
        self._db = db

    def ended_between(self, since: float, until: float) -> set[str]:
        found: set[str] = set()
        with self._db.connect() as conn:
            for table, key, prefix in (
                (api_keys, api_keys.c.key_id, "key"),
                (shares, shares.c.share_id, "share"),
            ):
                ended = or_(
                    and_(table.c.revoked_at > since, table.c.revoked_at <= until),
                    and_(table.c.expires_at > since, table.c.expires_at <= until),
                )
                found |= {f"{prefix}:{k}" for k in conn.execute(select(key).where(ended)).scalars()}
        return found
