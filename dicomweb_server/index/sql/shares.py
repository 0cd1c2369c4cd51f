"""The share port on SQL: shares, share_sessions and share_uses."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, insert, or_, select, update

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.models import share_sessions, share_uses, shares
from dicomweb_server.services.ports.shares import CODE_USED, ShareUse, StoredSession, StoredShare


def _share(row: Row[Any]) -> StoredShare:
    return StoredShare(
        share_id=row.share_id,
        study_uid=row.study_uid,
        series_uid=row.series_uid,
        rights=row.rights,
        created_by=row.created_by,
        created_at=float(row.created_at),
        expires_at=float(row.expires_at),
        max_uses=row.max_uses,
        uses=int(row.uses),
        revoked_at=row.revoked_at,
        token_sha256=row.token_sha256,
        code_sha256=row.code_sha256,
        code_failures=int(row.code_failures),
    )


class SqlShareIndex:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add_share(self, share: StoredShare) -> None:
        with self._db.writing() as conn:
            conn.execute(
                insert(shares).values(
                    share_id=share.share_id,
                    study_uid=share.study_uid,
                    series_uid=share.series_uid,
                    rights=share.rights,
                    created_by=share.created_by,
                    created_at=share.created_at,
                    expires_at=share.expires_at,
                    max_uses=share.max_uses,
                    uses=share.uses,
                    token_sha256=share.token_sha256,
                    code_sha256=share.code_sha256,
                )
            )

    def share(self, share_id: str) -> StoredShare | None:
        with self._db.connect() as conn:
            row = conn.execute(select(shares).where(shares.c.share_id == share_id)).first()
        return None if row is None else _share(row)

    def shares(self) -> list[StoredShare]:
        with self._db.connect() as conn:
            rows = conn.execute(select(shares).order_by(shares.c.created_at.desc())).all()
        return [_share(row) for row in rows]

    def revoke_share(self, share_id: str, at: float) -> bool:
        with self._db.writing() as conn:
            done = conn.execute(
                update(shares)
                .where(shares.c.share_id == share_id, shares.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
        return bool(done.rowcount)

    def use_share(
        self, share_id: str, at: float, max_code_failures: int, code_sha256: str | None = None
    ) -> bool:
        # One statement: two processes redeeming the last use (or the same one-time code) at
        # once cannot both have it.
        values: dict[str, Any] = {"uses": shares.c.uses + 1}
        conditions = [
            shares.c.share_id == share_id,
            shares.c.revoked_at.is_(None),
            shares.c.expires_at > at,
            shares.c.code_failures < max_code_failures,
            or_(shares.c.max_uses.is_(None), shares.c.uses < shares.c.max_uses),
        ]
        if code_sha256 is not None:
            conditions.append(shares.c.code_sha256 == code_sha256)
            values["code_sha256"] = CODE_USED
        with self._db.writing() as conn:
            done = conn.execute(update(shares).where(*conditions).values(**values))
        return bool(done.rowcount)

    def new_code(self, share_id: str, code_sha256: str) -> bool:
        with self._db.writing() as conn:
            done = conn.execute(
                update(shares)
                .where(shares.c.share_id == share_id, shares.c.revoked_at.is_(None))
                .values(code_sha256=code_sha256, code_failures=0)
            )
        return bool(done.rowcount)

    def code_failed(self, share_id: str) -> int:
        with self._db.writing() as conn:
            conn.execute(
                update(shares)
                .where(shares.c.share_id == share_id)
                .values(code_failures=shares.c.code_failures + 1)
            )
            return int(
                conn.execute(
                    select(shares.c.code_failures).where(shares.c.share_id == share_id)
                ).scalar_one()
            )

    def add_session(self, session: StoredSession) -> None:
        with self._db.writing() as conn:
            conn.execute(
                insert(share_sessions).values(
                    session_id=session.session_id,
                    share_id=session.share_id,
                    secret_sha256=session.secret_sha256,
                    created_at=session.created_at,
                    expires_at=session.expires_at,
                )
            )

    def session(self, session_id: str) -> tuple[StoredSession, StoredShare] | None:
        stmt = (
            select(
                shares,
                share_sessions.c.session_id,
                share_sessions.c.secret_sha256,
                share_sessions.c.created_at.label("session_created_at"),
                share_sessions.c.expires_at.label("session_expires_at"),
            )
            .select_from(share_sessions.join(shares))
            .where(share_sessions.c.session_id == session_id)
        )
        with self._db.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        session = StoredSession(
            row.session_id,
            row.share_id,
            row.secret_sha256,
            float(row.session_created_at),
            float(row.session_expires_at),
        )
        return session, _share(row)

    def record_use(self, share_id: str, at: float, client: str | None, outcome: str) -> None:
        with self._db.writing() as conn:
            conn.execute(
                insert(share_uses).values(share_id=share_id, at=at, client=client, outcome=outcome)
            )

    def uses(self, share_id: str, limit: int) -> list[ShareUse]:
        with self._db.connect() as conn:
            rows = conn.execute(
                select(share_uses.c.at, share_uses.c.client, share_uses.c.outcome)
                .where(share_uses.c.share_id == share_id)
                .order_by(share_uses.c.pk.desc())
                .limit(limit)
            ).all()
        return [ShareUse(float(r.at), r.client, r.outcome) for r in rows]
