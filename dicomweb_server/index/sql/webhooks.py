"""The webhooks port on SQL. Every step that two processes could both take is one
conditional statement (the cursor moves only from where it was read, a lease is taken only
when none holds it), so any number of processes share the work and none does it twice."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.orm import aliased

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.models import deliveries, subscriptions
from dicomweb_server.index.sql.sealed import Sealer
from dicomweb_server.services.ports.webhooks import (
    DEAD,
    PENDING,
    Delivery,
    NewDelivery,
    WebhookSubscription,
)


def _subscription(row: Row[Any], sealer: Sealer) -> WebhookSubscription:
    return WebhookSubscription(
        subscription_id=row.subscription_id,
        url=row.url,
        filter=row.filter,
        # A secret that cannot be opened (the key was changed or unset) signs nothing: its
        # deliveries fail with the reason until the key is back.
        secret=sealer.open(row.secret, row.subscription_id) or "",
        include_metadata=bool(row.include_metadata),
        base_url=row.base_url,
        created_by=row.created_by,
        created_at=row.created_at,
        cursor=row.cursor,
        disabled_at=row.disabled_at,
        disabled_reason=row.disabled_reason,
    )


def _delivery(row: Row[Any]) -> Delivery:
    return Delivery(
        pk=row.pk,
        subscription_id=row.subscription_id,
        webhook_id=row.webhook_id,
        sequence=row.sequence,
        study_uid=row.study_uid,
        payload=row.payload,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_status=row.last_status,
        last_error=row.last_error,
        done_at=row.done_at,
    )


class SqlWebhookIndex:
    def __init__(self, db: Database, secret_key: str | None = None) -> None:
        self._db = db
        self._sealer = Sealer(secret_key)

    def backlog(self) -> int:
        with self._db.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(deliveries)
                    .where(deliveries.c.state == PENDING)
                ).scalar_one()
            )

    def add(self, subscription: WebhookSubscription) -> None:
        values = dict(subscription.__dict__)
        values["include_metadata"] = int(subscription.include_metadata)
        values["secret"] = self._sealer.seal(subscription.secret, subscription.subscription_id)
        with self._db.writing() as conn:
            conn.execute(insert(subscriptions).values(**values))

    def get(self, subscription_id: str) -> WebhookSubscription | None:
        with self._db.connect() as conn:
            row = conn.execute(
                select(subscriptions).where(subscriptions.c.subscription_id == subscription_id)
            ).first()
        return None if row is None else _subscription(row, self._sealer)

    def every(self) -> list[WebhookSubscription]:
        with self._db.connect() as conn:
            rows = conn.execute(select(subscriptions).order_by(subscriptions.c.created_at)).all()
        return [_subscription(r, self._sealer) for r in rows]

    def remove(self, subscription_id: str) -> bool:
        with self._db.writing() as conn:
            conn.execute(delete(deliveries).where(deliveries.c.subscription_id == subscription_id))
            gone = conn.execute(
                delete(subscriptions).where(subscriptions.c.subscription_id == subscription_id)
            )
        return bool(gone.rowcount)

    def advance(
        self, subscription_id: str, cursor: int, to: int, made: list[NewDelivery], now: float
    ) -> bool:
        with self._db.writing() as conn:
            moved = conn.execute(
                update(subscriptions)
                .where(
                    subscriptions.c.subscription_id == subscription_id,
                    subscriptions.c.cursor == cursor,
                )
                .values(cursor=to)
            )
            if moved.rowcount != 1:
                return False
            if made:
                conn.execute(
                    insert(deliveries),
                    [
                        {
                            "subscription_id": subscription_id,
                            "webhook_id": d.webhook_id,
                            "sequence": d.sequence,
                            "study_uid": d.study_uid,
                            "payload": d.payload,
                            "state": PENDING,
                            "attempts": 0,
                            "next_attempt_at": now,
                        }
                        for d in made
                    ],
                )
        return True

    def due(self, now: float, limit: int) -> list[Delivery]:
        earlier = aliased(deliveries)
        head = ~exists().where(
            earlier.c.subscription_id == deliveries.c.subscription_id,
            earlier.c.study_uid == deliveries.c.study_uid,
            earlier.c.state == PENDING,
            earlier.c.pk < deliveries.c.pk,
        )
        stmt = (
            select(deliveries)
            .join(subscriptions, subscriptions.c.subscription_id == deliveries.c.subscription_id)
            .where(
                deliveries.c.state == PENDING,
                deliveries.c.next_attempt_at <= now,
                or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now),
                subscriptions.c.disabled_at.is_(None),
                head,
            )
            .order_by(deliveries.c.pk)
            .limit(limit)
        )
        with self._db.connect() as conn:
            return [_delivery(r) for r in conn.execute(stmt).all()]

    def lease(self, pk: int, now: float, until: float) -> bool:
        with self._db.writing() as conn:
            taken = conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.pk == pk,
                    deliveries.c.state == PENDING,
                    or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now),
                )
                .values(lease_until=until)
            )
        return taken.rowcount == 1

    def finish(
        self,
        pk: int,
        state: str,
        status: int | None,
        error: str | None,
        next_attempt_at: float,
        now: float,
    ) -> None:
        with self._db.writing() as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.pk == pk)
                .values(
                    state=state,
                    attempts=deliveries.c.attempts + 1,
                    last_status=status,
                    last_error=error,
                    next_attempt_at=next_attempt_at,
                    lease_until=None,
                    done_at=None if state == PENDING else now,
                )
            )

    def disable(self, subscription_id: str, reason: str | None, now: float | None) -> bool:
        with self._db.writing() as conn:
            changed = conn.execute(
                update(subscriptions)
                .where(subscriptions.c.subscription_id == subscription_id)
                .values(disabled_at=now, disabled_reason=reason)
            )
        return bool(changed.rowcount)

    def deliveries(self, subscription_id: str, state: str, limit: int) -> list[Delivery]:
        stmt = (
            select(deliveries)
            .where(deliveries.c.subscription_id == subscription_id, deliveries.c.state == state)
            .order_by(deliveries.c.pk)
            .limit(limit)
        )
        with self._db.connect() as conn:
            return [_delivery(r) for r in conn.execute(stmt).all()]

    def redrive(self, subscription_id: str, pks: list[int] | None, now: float) -> int:
        where = and_(deliveries.c.subscription_id == subscription_id, deliveries.c.state == DEAD)
        if pks is not None:
            where = and_(where, deliveries.c.pk.in_(pks))
        with self._db.writing() as conn:
            moved = conn.execute(
                update(deliveries)
                .where(where)
                .values(state=PENDING, attempts=0, next_attempt_at=now, done_at=None)
            )
        return int(moved.rowcount)
