"""Short reads of the embedded database run on the event loop (services/ports/inline.py): a
read past its deadline, or one that would wait, is made again in a worker thread and still
answers; no other database reads on the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.engine import make_engine, make_inline_engine
from dicomweb_server.services.ports.inline import DEADLINE, Overran
from dicomweb_server.web.threads import read

# About a second of SQLite's work: a recursive count no index can shorten.
SLOW = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) "
    "SELECT count(*) FROM n"
)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    return Database(make_engine(url), make_inline_engine(url))


def _count(db: Database, sql: str) -> tuple[int, str]:
    with db.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one()), threading.current_thread().name


def test_a_short_read_stays_on_the_loop(db: Database) -> None:
    async def main() -> tuple[int, str]:
        return await read(db.reads_inline, _count, db, "SELECT 41 + 1")

    value, thread = asyncio.run(main())
    assert value == 42 and thread == threading.main_thread().name


def test_a_read_past_its_deadline_is_interrupted_and_made_in_a_thread(db: Database) -> None:
    token = DEADLINE.set(time.perf_counter() + 0.002)
    started = time.perf_counter()
    try:
        with pytest.raises(Overran):
            _count(db, SLOW)
    finally:
        DEADLINE.reset(token)
    # Interrupted close to its deadline, not after the whole statement.
    assert time.perf_counter() - started < 0.2

    async def main() -> tuple[int, str]:
        return await read(db.reads_inline, _count, db, SLOW)

    value, thread = asyncio.run(main())
    assert value == 3000000 and thread.startswith("dicomweb-worker")


def test_a_locked_database_is_read_in_a_thread(tmp_path: Path) -> None:
    """A rollback-journal database (another tool's copy) under a writer: the loop does not
    wait for the lock; the thread does, and reads once the writer is done."""
    writer = sqlite3.connect(
        tmp_path / "plain.sqlite3", isolation_level=None, check_same_thread=False
    )
    writer.execute("CREATE TABLE t (x)")
    url = f"sqlite:///{tmp_path / 'plain.sqlite3'}"
    db = Database(make_engine(url), make_inline_engine(url))
    writer.execute("BEGIN EXCLUSIVE")
    threading.Timer(0.3, writer.rollback).start()

    async def main() -> tuple[int, str]:
        return await read(db.reads_inline, _count, db, "SELECT 7")

    try:
        value, thread = asyncio.run(main())
    finally:
        writer.close()
    assert value == 7 and thread.startswith("dicomweb-worker")


def test_postgresql_reads_never_run_on_the_loop(pg_url: str) -> None:
    assert make_inline_engine(pg_url) is None
    assert make_inline_engine("sqlite://") is None


def test_a_read_seen_before_runs_through_the_driver_with_the_same_rows(db: Database) -> None:
    from sqlalchemy import column, literal, select

    def build() -> Any:
        return select(literal(7).label("seven"), column("x").label("name")).select_from(
            text("(SELECT 'a' AS x UNION ALL SELECT 'b' AS x)")
        )

    first = db.rows(("t", 7), build)
    assert ("t", 7) in db._statements  # kept: the next one skips SQLAlchemy
    again = db.rows(("t", 7), build)
    assert [tuple(r) for r in first] == [tuple(r) for r in again] == [(7, "a"), (7, "b")]
    assert [r.name for r in again] == ["a", "b"]


def test_a_read_seen_before_on_the_loop_uses_the_loops_connection_and_its_deadline(
    db: Database,
) -> None:
    """On the loop a statement run before goes straight to the connection the inline pool
    lent for good: the same rows; the deadline still interrupts it; the pool's other
    connection still serves statements met the first time."""
    from sqlalchemy import literal, select

    def quick() -> Any:
        return select(literal(5).label("five"))

    def slow() -> Any:
        return text(SLOW.replace("count(*)", "count(*) AS total"))

    db.rows("quick", quick)
    db.rows("slow", slow, {})  # kept by a thread's read, as after a first overrun
    assert "slow" in db._statements
    token = DEADLINE.set(time.perf_counter() + 0.5)
    try:
        assert [tuple(r) for r in db.rows("quick", quick)] == [(5,)]
        assert db._loop_driver is not None
        assert [tuple(r) for r in db.rows("new", lambda: select(literal(6).label("six")))] == [(6,)]
    finally:
        DEADLINE.reset(token)
    token = DEADLINE.set(time.perf_counter() + 0.002)
    started = time.perf_counter()
    try:
        with pytest.raises(Overran):
            db.rows("slow", slow, {})
    finally:
        DEADLINE.reset(token)
    assert time.perf_counter() - started < 0.2
    db.close()
    assert db._loop_driver is None


def test_a_key_checked_on_the_loop_is_kept_until_its_row_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """services/access.py known_caller: past its first check on the loop, a key costs no
    digest while its row is the one checked; a revocation (any connection's commit) is seen
    on the very next request."""
    from dicomweb_server.container import build_container, upgrade_database
    from dicomweb_server.services import access, tokens
    from dicomweb_server.services.context import READ
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, auth="api-key", audit="none")
    upgrade_database(settings)
    container = build_container(settings)
    digests: list[str] = []
    made = tokens.digest

    def counted(secret: str) -> str:
        digests.append(secret)
        return made(secret)

    monkeypatch.setattr(tokens, "digest", counted)
    monkeypatch.setattr(access, "_TOUCH_EVERY", 3600.0)
    try:
        service = container.access
        made_key = service.create_key("loop", {READ})
        key_id, secret = made_key.key.key_id, made_key.secret
        service._touched[key_id] = time.time()  # its last use just noted
        digests.clear()  # the one made with the key
        token = DEADLINE.set(time.perf_counter() + 1.0)
        try:
            callers = [service.known_caller(secret, f"r{i}", "10.0.0.1") for i in range(3)]
            assert all(c is not None and c.principal == f"key:{key_id}" for c in callers)
            assert [c.request_id for c in callers if c] == ["r0", "r1", "r2"]
            assert all(c is not None and c.client == "10.0.0.1" for c in callers)
            assert len(digests) == 1  # checked once, then kept
            assert service.known_caller(secret[:-1] + "x", "r3") is None
            assert service.revoke_key(key_id)
            assert service.known_caller(secret, "r4") is None
        finally:
            DEADLINE.reset(token)
    finally:
        container.close()
