"""One database for the index classes: pooled connections, the dialect, a health check."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import TimeoutError as PoolTimeout

from dicomweb_server.index.sql.engine import WRITE
from dicomweb_server.services.errors import Unavailable


class Database:
    """Thread-safe: each call takes its own connection from the engine's pool."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def connect(self) -> Connection:
        """A pooled connection; none free within the pool timeout is a 503, not a 500."""
        try:
            return self.engine.connect()
        except PoolTimeout as exc:
            raise Unavailable("every database connection is busy; try again shortly") from exc

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
