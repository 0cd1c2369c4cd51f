"""One database for the index classes: pooled connections, the dialect, a health check."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import TimeoutError as PoolTimeout

from dicomweb_server.index.sql.engine import WRITE
from dicomweb_server.services.errors import Unavailable
from dicomweb_server.services.ports.inline import DEADLINE, Overran


class Database:
    """Thread-safe: each call takes its own connection from the engine's pool."""

    def __init__(self, engine: Engine, inline: Engine | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # The event loop's own connection for short reads (services/ports/inline.py):
        # SQLite only, where a read is a call into the library, not a round trip.
        self.inline = inline

        self._stamp: sqlite3.Connection | None = None
        self._stamp_lock = threading.Lock()

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
