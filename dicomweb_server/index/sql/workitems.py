"""The workitems port on SQL (UPS-RS).

A change is one conditional UPDATE on the version it was decided on, so two processes
claiming one workitem at once cannot both win: the second finds the version moved and
decides again (and is refused). Each change writes the event reports of every subscriber in
its own transaction, ordered as the change log is (an advisory lock on PostgreSQL, then a
NOTIFY that wakes every process's event channels once it commits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    and_,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from dicomweb_server.dicom import ups
from dicomweb_server.dicom.matching import Key
from dicomweb_server.index.sql import query
from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.entities import WORKITEM, column_values
from dicomweb_server.index.sql.models import (
    workitem_events,
    workitem_receivers,
    workitem_subscriptions,
    workitems,
)
from dicomweb_server.services.ports.workitems import (
    JsonDict,
    Report,
    StoredWorkitem,
    WorkitemChange,
    WorkitemEvent,
    WorkitemSearch,
)

EVENTS_LOCK = 0x44434D5550534556  # "DCMUPSEV"
EVENTS_CHANNEL = "dicomweb_workitems"
_LOCK_EVENTS = text(f"SELECT pg_advisory_xact_lock({EVENTS_LOCK})")
_NOTIFY_EVENTS = text(f"SELECT pg_notify('{EVENTS_CHANNEL}', '')")
_GLOBAL = (ups.GLOBAL_SUBSCRIPTION, ups.FILTERED_SUBSCRIPTION)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _row(uid: str, attributes: JsonDict) -> dict[str, Any]:
    return {
        **column_values(WORKITEM, attributes),
        "uid": uid,
        "attributes": _dumps(attributes),
    }


class SqlWorkitemIndex:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- the worklist --

    def create(self, uid: str, attributes: JsonDict, reports: Sequence[Report], now: float) -> bool:
        try:
            with self._db.writing() as conn:
                row = {**_row(uid, attributes), "created_at": now, "updated_at": now}
                conn.execute(insert(workitems).values(row))
                self._subscribe_global(conn, uid)
                self._write_reports(conn, uid, reports, now)
        except IntegrityError:
            if self.get(uid) is not None:
                return False  # the UID is taken
            raise
        return True

    def _subscribe_global(self, conn: Connection, uid: str) -> None:
        """PS3.4 CC.2.3.2: a new workitem gets the subscribers of the Worklist, and those of
        a filtered Worklist whose filter it matches."""
        rows = conn.execute(
            select(
                workitem_subscriptions.c.aetitle,
                workitem_subscriptions.c.target,
                workitem_subscriptions.c.filter,
                workitem_subscriptions.c.deletion_lock,
                workitem_subscriptions.c.created_at,
            ).where(
                workitem_subscriptions.c.target.in_(_GLOBAL),
                workitem_subscriptions.c.suspended == 0,
            )
        ).all()
        for row in rows:
            if row.target == ups.FILTERED_SUBSCRIPTION and not self._matches(
                conn, uid, _filter_keys(row.filter)
            ):
                continue
            self._add_subscription(conn, row.aetitle, uid, bool(row.deletion_lock), row.created_at)

    def _matches(self, conn: Connection, uid: str, keys: Sequence[Key]) -> bool:
        found = conn.execute(
            select(workitems.c.pk).where(
                workitems.c.uid == uid, query.where(WORKITEM, list(keys), self._db.dialect)
            )
        ).first()
        return found is not None

    def _add_subscription(
        self, conn: Connection, aetitle: str, uid: str, lock: bool, now: float
    ) -> None:
        held = conn.execute(
            select(workitem_subscriptions.c.pk).where(
                workitem_subscriptions.c.aetitle == aetitle,
                workitem_subscriptions.c.target == uid,
            )
        ).first()
        if held is None:
            conn.execute(
                insert(workitem_subscriptions).values(
                    aetitle=aetitle, target=uid, deletion_lock=int(lock), created_at=now
                )
            )
        elif lock:
            conn.execute(
                update(workitem_subscriptions)
                .where(workitem_subscriptions.c.pk == held.pk)
                .values(deletion_lock=1)
            )

    def _write_reports(
        self,
        conn: Connection,
        uid: str,
        reports: Sequence[Report],
        now: float,
        only: str | None = None,
    ) -> None:
        if not reports:
            return
        if only is not None:
            receivers = [only]
        else:
            receivers = list(
                conn.execute(
                    select(workitem_subscriptions.c.aetitle).where(
                        workitem_subscriptions.c.target == uid
                    )
                ).scalars()
            )
        rows = [
            {
                "at": now,
                "aetitle": aetitle,
                "workitem_uid": uid,
                "event_type": int(event_type),
                "report": _dumps(info),
            }
            for aetitle in receivers
            for event_type, info in reports
        ]
        self._write_events(conn, rows)

    def _write_events(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self._db.dialect == "postgresql":
            # As write_changes: sequences become visible in their order.
            conn.execute(_LOCK_EVENTS)
            conn.execute(insert(workitem_events), rows)
            conn.execute(_NOTIFY_EVENTS)
        else:
            conn.execute(insert(workitem_events), rows)

    def get(self, uid: str) -> StoredWorkitem | None:
        with self._db.connect() as conn:
            row = conn.execute(
                select(
                    workitems.c.uid,
                    workitems.c.state,
                    workitems.c.transaction_uid,
                    workitems.c.version,
                    workitems.c.attributes,
                ).where(workitems.c.uid == uid)
            ).first()
        if row is None:
            return None
        return StoredWorkitem(
            row.uid, row.state, row.transaction_uid, row.version, orjson.loads(row.attributes)
        )

    def change(self, change: WorkitemChange, now: float) -> bool:
        values: dict[str, Any] = {
            **_row(change.uid, change.attributes),
            "state": change.state,
            "transaction_uid": change.transaction_uid,
            "version": change.version + 1,
            "updated_at": now,
        }
        if change.finished:
            values["finished_at"] = now
        with self._db.writing() as conn:
            done = conn.execute(
                update(workitems)
                .where(workitems.c.uid == change.uid, workitems.c.version == change.version)
                .values(**values)
            )
            if done.rowcount != 1:
                return False
            self._write_reports(conn, change.uid, change.reports, now)
        return True

    def report(self, uid: str, reports: Sequence[Report], now: float) -> None:
        with self._db.writing() as conn:
            self._write_reports(conn, uid, reports, now)

    def search(self, q: WorkitemSearch) -> list[JsonDict]:
        stmt = (
            select(workitems.c.attributes)
            .where(
                query.where(
                    WORKITEM,
                    list(q.matches),
                    self._db.dialect,
                    fuzzy=q.fuzzy,
                    timezone_offset=q.timezone_offset,
                )
            )
            .order_by(workitems.c.pk)
            .limit(q.limit)
            .offset(q.offset)
        )
        with self._db.connect() as conn:
            return [orjson.loads(text_) for text_ in conn.execute(stmt).scalars()]

    def delete(self, uid: str) -> bool:
        with self._db.writing() as conn:
            conn.execute(
                delete(workitem_subscriptions).where(workitem_subscriptions.c.target == uid)
            )
            done = conn.execute(delete(workitems).where(workitems.c.uid == uid))
        return done.rowcount == 1

    def locked(self, uid: str) -> bool:
        with self._db.connect() as conn:
            return conn.execute(_lock_held(uid)).scalar() is not None

    def marker(self) -> tuple[float, int]:
        with self._db.connect() as conn:
            latest, count = conn.execute(
                select(func.max(workitems.c.updated_at), func.count()).select_from(workitems)
            ).one()
        return float(latest or 0.0), int(count)

    def purge(self, finished_before: float, limit: int) -> int:
        with self._db.writing() as conn:
            uids = list(
                conn.execute(
                    select(workitems.c.uid)
                    .where(
                        workitems.c.state.in_(tuple(ups.FINAL_STATES)),
                        workitems.c.finished_at < finished_before,
                        ~exists(
                            select(workitem_subscriptions.c.pk).where(
                                workitem_subscriptions.c.target == workitems.c.uid,
                                workitem_subscriptions.c.deletion_lock == 1,
                            )
                        ),
                    )
                    .limit(limit)
                ).scalars()
            )
            if uids:
                conn.execute(
                    delete(workitem_subscriptions).where(workitem_subscriptions.c.target.in_(uids))
                )
                conn.execute(delete(workitems).where(workitems.c.uid.in_(uids)))
            # Reports as old, sent or not: a subscriber that never connects does not keep
            # every report for ever.
            conn.execute(delete(workitem_events).where(workitem_events.c.at < finished_before))
        return len(uids)

    # -- subscriptions --

    def receiver_owner(self, aetitle: str) -> str | None:
        with self._db.connect() as conn:
            return conn.execute(
                select(workitem_receivers.c.owner).where(workitem_receivers.c.aetitle == aetitle)
            ).scalar()

    def assign_receiver(self, aetitle: str, owner: str) -> None:
        with self._db.writing() as conn:
            moved = conn.execute(
                update(workitem_receivers)
                .where(workitem_receivers.c.aetitle == aetitle)
                .values(owner=owner)
            ).rowcount
            if not moved:
                conn.execute(insert(workitem_receivers).values(aetitle=aetitle, owner=owner))

    def subscriptions_of(self, owner: str) -> int:
        with self._db.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(
                        workitem_subscriptions.join(
                            workitem_receivers,
                            workitem_receivers.c.aetitle == workitem_subscriptions.c.aetitle,
                        )
                    )
                    .where(workitem_receivers.c.owner == owner)
                ).scalar_one()
            )

    def subscribe(
        self,
        aetitle: str,
        owner: str,
        target: str,
        deletion_lock: bool,
        filter_text: str | None,
        filter_keys: Sequence[Key],
        now: float,
    ) -> list[str] | None:
        with self._db.writing() as conn:
            if (
                conn.execute(
                    select(workitem_receivers.c.aetitle).where(
                        workitem_receivers.c.aetitle == aetitle
                    )
                ).first()
                is None
            ):
                conn.execute(insert(workitem_receivers).values(aetitle=aetitle, owner=owner))
            if target in _GLOBAL:
                conn.execute(
                    delete(workitem_subscriptions).where(
                        workitem_subscriptions.c.aetitle == aetitle,
                        workitem_subscriptions.c.target == target,
                    )
                )
                conn.execute(
                    insert(workitem_subscriptions).values(
                        aetitle=aetitle,
                        target=target,
                        filter=filter_text,
                        deletion_lock=int(deletion_lock),
                        created_at=now,
                    )
                )
                # PS3.4 CC.2.3.2: the existing workitems too (those still to be done).
                found = select(workitems.c.uid, workitems.c.attributes).where(
                    workitems.c.state.in_((ups.SCHEDULED, ups.IN_PROGRESS))
                )
                if target == ups.FILTERED_SUBSCRIPTION:
                    found = found.where(query.where(WORKITEM, list(filter_keys), self._db.dialect))
                rows = conn.execute(found.order_by(workitems.c.pk)).all()
            else:
                rows = conn.execute(
                    select(workitems.c.uid, workitems.c.attributes).where(workitems.c.uid == target)
                ).all()
                if not rows:
                    return None
            events = []
            for row in rows:
                self._add_subscription(conn, aetitle, row.uid, deletion_lock, now)
                report = ups.state_report(orjson.loads(row.attributes))
                events.append(
                    {
                        "at": now,
                        "aetitle": aetitle,
                        "workitem_uid": row.uid,
                        "event_type": int(ups.EventType.STATE_REPORT),
                        "report": _dumps(report),
                    }
                )
            self._write_events(conn, events)
        return [row.uid for row in rows]

    def unsubscribe(self, aetitle: str, target: str) -> bool:
        mine = workitem_subscriptions.c.aetitle == aetitle
        with self._db.writing() as conn:
            if target in _GLOBAL:
                held = conn.execute(
                    select(workitem_subscriptions.c.pk).where(
                        mine, workitem_subscriptions.c.target == target
                    )
                ).first()
                if held is None:
                    return False
                # PS3.4 CC.2.3.3: off the global list and every workitem's.
                conn.execute(delete(workitem_subscriptions).where(mine))
                return True
            done = conn.execute(
                delete(workitem_subscriptions).where(
                    mine, workitem_subscriptions.c.target == target
                )
            )
        return done.rowcount == 1

    def suspend(self, aetitle: str, target: str) -> bool:
        with self._db.writing() as conn:
            done = conn.execute(
                update(workitem_subscriptions)
                .where(
                    workitem_subscriptions.c.aetitle == aetitle,
                    workitem_subscriptions.c.target == target,
                )
                .values(suspended=1)
            )
        return done.rowcount == 1

    # -- event channels --

    def events(self, aetitle: str, after: int, limit: int) -> list[WorkitemEvent]:
        with self._db.connect() as conn:
            rows = conn.execute(
                select(workitem_events)
                .where(workitem_events.c.aetitle == aetitle, workitem_events.c.seq > after)
                .order_by(workitem_events.c.seq)
                .limit(limit)
            ).all()
        return [
            WorkitemEvent(
                r.seq, r.aetitle, r.workitem_uid, r.event_type, orjson.loads(r.report), r.at
            )
            for r in rows
        ]

    def delivered(self, aetitle: str) -> int:
        with self._db.connect() as conn:
            found = conn.execute(
                select(workitem_receivers.c.delivered).where(
                    workitem_receivers.c.aetitle == aetitle
                )
            ).scalar()
        return int(found or 0)

    def mark_delivered(self, aetitle: str, seq: int) -> None:
        with self._db.writing() as conn:
            conn.execute(
                update(workitem_receivers)
                .where(
                    workitem_receivers.c.aetitle == aetitle, workitem_receivers.c.delivered < seq
                )
                .values(delivered=seq)
            )

    def connected(self, aetitle: str, now: float) -> float | None:
        mine = workitem_receivers.c.aetitle == aetitle
        with self._db.writing() as conn:
            before = conn.execute(select(workitem_receivers.c.connected_at).where(mine)).scalar()
            conn.execute(update(workitem_receivers).where(mine).values(connected_at=now))
        return None if before is None else float(before)


def _lock_held(uid: str) -> Any:
    return (
        select(workitem_subscriptions.c.pk)
        .where(
            and_(
                workitem_subscriptions.c.target == uid,
                workitem_subscriptions.c.deletion_lock == 1,
            )
        )
        .limit(1)
    )


def _filter_keys(filter_text: str | None) -> list[Key]:
    """A filtered subscription's keys, as stored."""
    return ups.parse_filter(filter_text or "")
