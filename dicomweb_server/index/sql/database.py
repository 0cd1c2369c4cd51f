"""One database for the index classes: pooled connections, the dialect, a health check."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections import namedtuple
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.sql import Executable

from dicomweb_server.index.sql.engine import WRITE, driver_error
from dicomweb_server.services.errors import Unavailable
from dicomweb_server.services.ports.inline import DEADLINE, Overran

# Statements kept for `rows` at most (past it, they are forgotten and kept again).
_STATEMENTS_KEPT = 512


class Database:
    """Thread-safe: each call takes its own connection from the engine's pool."""

    def __init__(self, engine: Engine, inline: Engine | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # The event loop's own connection for short reads (services/ports/inline.py):
        # SQLite only, where a read is a call into the library, not a round trip.
        self.inline = inline
        # The connection `version` reads SQLite's data_version on, made at its first use.
        self._stamp: sqlite3.Connection | None = None
        self._stamp_lock = threading.Lock()
        # Reads run before, as SQLite runs them (`rows`).
        self._statements: dict[Hashable, tuple[str, Any, Any, Any]] = {}
        # The loop's driver connection for reads run before (`rows`), held out of the
        # inline pool once; the lock keeps a second event loop of the process (a test's)
        # from using it at the same moment: that one takes the pooled path.
        self._loop_driver: Any = None
        self._loop_lock = threading.Lock()

    @property
    def reads_inline(self) -> bool:
        return self.inline is not None

    def version(self) -> int | None:
        """On the event loop, with the embedded database: a number that changes whenever any
        connection of any process commits a change (SQLite's data_version, read on a
        connection that never writes: about 2 us). What was read when it had a value is
        still true while it keeps it. None where there is no such number."""
        if self.inline is None or DEADLINE.get() is None:
            return None
        with self._stamp_lock:
            try:
                if self._stamp is None:
                    database = self.inline.url.database
                    self._stamp = sqlite3.connect(
                        database or "", isolation_level=None, check_same_thread=False
                    )
                return int(self._stamp.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:
                return None

    def rows(
        self,
        key: Hashable,
        build: Callable[[], Executable],
        params: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        """The rows of the read `build()` makes with `params` (its named parameters), as
        named tuples. `key` names the statement with every value in it but `params`. On
        SQLite, a statement run before under the same key runs again straight through the
        driver with the same SQL text, and its parameters in the same places: building the
        statement, SQLAlchemy's cache key and its execution context cost several times the
        read itself (about 140 of 180 us for an empty QIDO-RS). Elsewhere, and the first
        time, through SQLAlchemy."""
        given = params or {}
        if self.dialect != "sqlite":
            with self.connect() as conn:
                return list(conn.execute(build(), given).all())
        known = self._statements.get(key)
        # On the loop: the loop's own driver connection, without a pool checkout and
        # SQLAlchemy's Connection around it (about a third of the read).
        if (
            known is not None
            and self.inline is not None
            and DEADLINE.get() is not None
            and self._loop_lock.acquire(blocking=False)
        ):
            try:
                return self._run(self._loop_connection(), known, given)
            finally:
                self._loop_lock.release()
        with self.connect() as conn:
            driver = conn.connection.driver_connection
            if known is not None and driver is not None:
                return self._run(driver, known, given)
            result = conn.execute(build(), given)
            found = list(result.all())
            self._keep(key, result, given)
        return found

    @staticmethod
    def _run(
        driver: sqlite3.Connection, known: tuple[str, Any, Any, Any], given: Mapping[str, Any]
    ) -> list[Any]:
        sql, values, slots, made = known
        if slots:
            values = list(values)
            for index, name in slots:
                values[index] = given[name]
        try:
            found = driver.execute(sql, values).fetchall()
        except sqlite3.Error as exc:
            raise driver_error(exc) from exc
        return [made._make(r) for r in found]

    def _loop_connection(self) -> sqlite3.Connection:
        """The inline engine's connection kept for `rows` (its pool holds one more for
        statements met the first time): the same PRAGMAs, no wait for a lock, the deadline's
        progress handler."""
        if self._loop_driver is None:
            assert self.inline is not None
            try:
                held = self.inline.raw_connection()
            except PoolTimeout as exc:
                raise Overran from exc
            self._loop_driver = held
        driver = self._loop_driver.driver_connection
        assert driver is not None
        return driver  # type: ignore[no-any-return]

    def _keep(self, key: Hashable, result: Any, given: Mapping[str, Any]) -> None:
        """The SQL text and parameters SQLAlchemy made for `result`, kept for `rows`."""
        context = result.context
        columns = list(result.keys())
        bound = list(getattr(context.compiled, "positiontup", None) or [])
        values = tuple(context.parameters[0]) if context.parameters else ()
        # Only a statement whose parameters are its compiled ones, one by one (no list
        # expanded into several), with columns that can name a tuple's fields.
        if len(bound) != len(values) or not all(
            c.isidentifier() and not c.startswith("_") for c in columns
        ):
            return
        slots = tuple((i, name) for i, name in enumerate(bound) if name in given)
        if len(self._statements) >= _STATEMENTS_KEPT:
            self._statements.clear()
        shape: Any = namedtuple("Row", columns)  # type: ignore[misc]
        self._statements[key] = (context.statement, values, slots, shape)

    def connect(self) -> Connection:
        """A pooled connection; none free within the pool timeout is a 503, not a 500. On
        the event loop (a deadline set), the loop's own connection."""
        if self.inline is not None and DEADLINE.get() is not None:
            try:
                return self.inline.connect()
            except PoolTimeout as exc:
                raise Overran from exc
        try:
            return self.engine.connect()
        except PoolTimeout as exc:
            raise Unavailable("every database connection is busy; try again shortly") from exc

    def close(self) -> None:
        with self._stamp_lock:
            if self._stamp is not None:
                self._stamp.close()
                self._stamp = None
        with self._loop_lock:
            if self._loop_driver is not None:
                self._loop_driver.close()
                self._loop_driver = None
        if self.inline is not None:
            self.inline.dispose()
        self.engine.dispose()

    @contextlib.contextmanager
    def writing(self) -> Iterator[Connection]:
        """A connection in a write transaction (on SQLite BEGIN IMMEDIATE: writers queue at
        the start, not at their first write), committed when the block ends."""
        with self.connect() as conn:
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                yield conn

    def check(self) -> None:
        with self.connect() as conn:
            conn.execute(text("SELECT 1"))
