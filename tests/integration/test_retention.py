"""Retention (issue 30): audit events, change log entries, delivered webhook deliveries, share
uses and failed credentials stop growing: pruned in batches past their retention, by one
process at a time, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert

from dicomweb_server.container import Container, build_container, upgrade_database
from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.models import (
    audit_events,
    auth_failures,
    changes,
    deliveries,
    share_uses,
    shares,
    subscriptions,
)
from dicomweb_server.index.sql.retention import SqlRetentionIndex
from dicomweb_server.services.ports.retention import (
    AUDIT,
    CHANGES,
    DELIVERIES,
    FAILURES,
    SHARE_USES,
)
from dicomweb_server.services.retention import Retention
from tests.conftest import make_settings
from tests.integration.test_migrations import pg_schema

DAY = 86400.0


@pytest.fixture(params=["sqlite", "postgresql"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Container]:
    url = None
    if request.param == "postgresql":
        url = pg_schema(request.getfixturevalue("pg_url"), "retention")
    settings = make_settings(tmp_path, url)
    upgrade_database(settings)
    container = build_container(settings)
    try:
        yield container
    finally:
        container.close()


def _log_rows(engine: Engine, at: float, n: int) -> None:
    """`n` rows of each pruned kind, made at `at`."""
    with engine.begin() as conn:
        conn.execute(
            insert(audit_events),
            [
                {"at": at, "event_id": "110112", "outcome": "0", "requestor": "x", "message": "{}"}
                for _ in range(n)
            ],
        )
        conn.execute(
            insert(changes),
            [{"at": at, "action": "create", "study_uid": "1.2.3"} for _ in range(n)],
        )
        conn.execute(
            insert(deliveries),
            [
                {
                    "subscription_id": "s1",
                    "webhook_id": f"msg_{at}_{i}",
                    "sequence": i,
                    "study_uid": "1.2.3",
                    "payload": "{}",
                    "state": "delivered" if i % 2 else "dead",
                    "next_attempt_at": at,
                    "done_at": at,
                }
                for i in range(n)
            ],
        )
        conn.execute(
            insert(share_uses),
            [{"share_id": "sh1", "at": at, "outcome": "redeemed"} for _ in range(n)],
        )
        conn.execute(insert(auth_failures), [{"subject": "10.0.0.1", "at": at}] * n)


def _parents(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(subscriptions).values(
                subscription_id="s1",
                url="https://example.org/",
                filter="",
                secret="whsec_x",
                base_url="http://x",
                created_by="t",
                created_at=0,
                cursor=0,
            )
        )
        conn.execute(
            insert(shares).values(
                share_id="sh1",
                study_uid="1.2.3",
                rights="view",
                created_by="t",
                created_at=0,
                expires_at=1e12,
                uses=0,
                token_sha256="0" * 64,
            )
        )


def test_growth_stops_under_steady_writing(archive: Container) -> None:
    """A day's worth of rows every day for three weeks, kept a week: every kind levels off at
    a week's worth (dead deliveries are kept: they wait for a redrive)."""
    engine = archive.engine
    _parents(engine)
    clock = [1_000_000_000.0]
    week = 7 * DAY
    retention = Retention(
        SqlRetentionIndex(Database(archive.engine)),
        {AUDIT: week, CHANGES: week, DELIVERIES: week, SHARE_USES: week},
        batch=7,
        clock=lambda: clock[0],
    )
    index = SqlRetentionIndex(Database(archive.engine))
    seen = []
    for _ in range(21):
        _log_rows(engine, clock[0], 10)
        retention.prune()
        seen.append({kind: index.count(kind) for kind in (AUDIT, CHANGES, SHARE_USES)})
        clock[0] += DAY
    # Eight days of rows at most (today's and the seven before the cut), never more.
    assert all(counts[AUDIT] <= 80 for counts in seen)
    assert seen[-1] == seen[-5] == {AUDIT: 80, CHANGES: 80, SHARE_USES: 80}
    assert index.count(FAILURES) <= 10 * 2  # failures: an hour's worth, at most a day's rows
    # Delivered ones go; dead ones (half of each day's) stay for their redrive.
    assert index.count(DELIVERIES) == 21 * 5 + 8 * 5


def test_one_process_at_a_time_prunes(archive: Container) -> None:
    engine = archive.engine
    _parents(engine)
    _log_rows(engine, 1000.0, 25)
    index = SqlRetentionIndex(Database(archive.engine))
    now = 1000.0 + 30 * DAY
    first = Retention(index, {AUDIT: DAY}, batch=10, clock=lambda: now)
    second = Retention(index, {AUDIT: DAY}, batch=10, clock=lambda: now)
    # Another process holds the lease: this one skips its round and removes nothing.
    assert index.take_lease("retention", "elsewhere", now, now + 60)
    assert second.prune() == {}
    assert index.count(AUDIT) == 25
    index.release("retention", "elsewhere")
    # Free again: one round removes everything past the cut, in batches of 10.
    assert first.prune()[AUDIT] == 25
    assert index.count(AUDIT) == 0
    assert second.prune() == {}  # nothing left to do, and the lease is free for it


def test_zero_keeps_for_ever(archive: Container) -> None:
    engine = archive.engine
    _parents(engine)
    _log_rows(engine, 1000.0, 3)
    kept = Retention(
        SqlRetentionIndex(Database(archive.engine)), {AUDIT: 0, CHANGES: 0}, clock=lambda: 1e10
    )
    removed = kept.prune()
    assert AUDIT not in removed and CHANGES not in removed
    assert removed[FAILURES] == 3
