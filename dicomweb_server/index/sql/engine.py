"""Engines for the index, tuned per database."""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DisconnectionError, OperationalError

from dicomweb_server.dicom.errors import backend_text
from dicomweb_server.services.errors import InvalidRequest, Unavailable
from dicomweb_server.services.ports.inline import DEADLINE, Overran

log = logging.getLogger("dicomweb_server.index")

WRITE = "dicomweb_write"


def make_engine(
    url: str, pool_size: int = 10, max_overflow: int = 10, pool_timeout: float = 10.0
) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, pool_size, max_overflow, pool_timeout)
    else:
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=1800,
            connect_args={"connect_timeout": 5},
        )
        _ping_when_idle(engine)
    event.listen(engine, "handle_error", _unavailable)
    return engine


# SQLite calls the deadline check every this many virtual machine steps (tens of microseconds).
_PROGRESS_STEPS = 2000


def make_inline_engine(url: str) -> Engine | None:
    """The event loop's own connection for short reads (services/ports/inline.py), for an
    SQLite file; None for any other database (a read there is a round trip, kept off the
    loop). Two connections, never waited for: the loop runs one read at a time, on the one
    Database.rows keeps for statements run before or on the other. They wait for no lock (a
    reader of a WAL database rarely meets one), and a statement still running at the
    deadline is interrupted; either raises Overran, and the read is made again in a worker
    thread, on a pooled connection that waits as usual."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    engine = _configured(
        create_engine(
            url,
            connect_args={"timeout": 0, "check_same_thread": False},
            pool_size=2,
            max_overflow=0,
            pool_timeout=0,
        )
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # After _configured's own PRAGMAs (listeners run in order): no wait for a lock.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.close()
        dbapi_connection.set_progress_handler(_past_deadline, _PROGRESS_STEPS)

    event.listen(engine, "handle_error", _overran)
    return engine


def _past_deadline() -> int:
    """SQLite's progress handler: non-zero interrupts the statement."""
    deadline = DEADLINE.get()
    return 1 if deadline is not None and time.perf_counter() > deadline else 0


def _overran(context: ExceptionContext) -> Exception | None:
    """On the loop's connection, whatever the database refused (interrupted, locked, or a
    statement past a limit) is made again in a worker thread, which reports it properly."""
    if isinstance(context.sqlalchemy_exception, OperationalError):
        return Overran()
    return None


# A pooled connection unused this long is pinged before use.
PING_AFTER_IDLE_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """A connection the database dropped (restart, failover, network cut) is noticed before
    use and replaced, so the server recovers by itself when the database returns. Only a
    connection idle for a while is pinged (pool_pre_ping would cost a round trip on every
    checkout, i.e. every request); one in use meanwhile was exercised, and a disconnect
    seen on any connection invalidates the whole pool."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_connection.rollback()
        except Exception as exc:
            # The pool discards this connection and checks out another (a new one).
            raise DisconnectionError("the pooled connection was dropped") from exc


# SQLite's words for a statement past one of its limits (https://sqlite.org/limits.html).
_SQLITE_LIMITS = (
    "parser stack overflow",
    "too many sql variables",
    "expression tree is too large",
    "too many terms in compound select",
    "pattern too complex",
    "string or blob too big",
    "too many columns",
    # PostgreSQL's parser (SQLSTATE 42601) when an expression nests past its stack.
    "memory exhausted",
)


def _unavailable(context: ExceptionContext) -> Exception | None:
    """A statement past a limit of the database is the request's fault (400); a database
    that cannot be reached (or is locked) is a 503 with Retry-After, not a 500: the request
    can be made again once it is back. Neither tells the client how the server is built."""
    original = context.original_exception
    if _past_a_limit(original):
        return _too_complex()
    if context.is_disconnect or isinstance(context.sqlalchemy_exception, OperationalError):
        return _unreachable(original)
    return None


def _past_a_limit(original: BaseException) -> bool:
    # PostgreSQL SQLSTATE class 54: program limit exceeded (stack depth, too many columns...).
    sqlstate = str(getattr(original, "sqlstate", "") or "")
    text = str(original).lower()
    return sqlstate.startswith("54") or any(limit in text for limit in _SQLITE_LIMITS)


def _too_complex() -> InvalidRequest:
    return InvalidRequest(
        "the request is too complex for the index: ask for fewer values or keys at once"
    )


def _unreachable(original: BaseException) -> Unavailable:
    log.warning(
        "index database unavailable: %s: %s", type(original).__name__, backend_text(str(original))
    )
    return Unavailable("the index database is unavailable; try again shortly")


def driver_error(exc: Exception) -> Exception:
    """What an error of the SQLite driver, met outside SQLAlchemy (Database.rows), means:
    as `_overran` on the event loop, as `_unavailable` elsewhere."""
    if DEADLINE.get() is not None:
        return Overran()
    return _too_complex() if _past_a_limit(exc) else _unreachable(exc)


def _sqlite_engine(url: str, pool_size: int, max_overflow: int, pool_timeout: float) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        from pathlib import Path

        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    if parsed.database in (None, "", ":memory:"):
        return _configured(create_engine(url, connect_args={"check_same_thread": False}))
    # As many connections kept open as on PostgreSQL: a connection opened past the pool is
    # closed when returned, and each new one costs its PRAGMAs (a busy process that needs
    # more than SQLAlchemy's default of 5 at once would open and close one per request).
    engine = create_engine(
        url,
        connect_args={"timeout": 60, "check_same_thread": False},
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
    )
    return _configured(engine)


def _configured(engine: Engine) -> Engine:

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy issues BEGIN itself (below), so the driver must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # Each commit is flushed to the disk before it returns (NORMAL would let a power loss
        # roll back a commit whose instances were acknowledged); one flush per STOW batch.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        # PS3.4 C.2.2.2.4: wildcard matching is case-sensitive, like single values.
        cursor.execute("PRAGMA case_sensitive_like=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A write takes the database lock up front: two deferred transactions that both read
        # and then write would otherwise fail at once with "database is locked".
        if conn.get_execution_options().get(WRITE):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine
