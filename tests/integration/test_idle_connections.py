"""A pooled PostgreSQL connection that the database dropped while it was idle is noticed
before use and replaced: the request that takes it from the pool never sees the drop."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, create_engine, text

from dicomweb_server.index.sql import engine as engines
from tests.conftest import PG_ADMIN_URL


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_dropped_while_idle_is_replaced(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engines.make_engine(pg_url, pool_size=1, max_overflow=0)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        first = _backend_pid(engine)
        # Used again at once: not pinged, the same connection.
        assert _backend_pid(engine) == first
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        monkeypatch.setattr(engines, "PING_AFTER_IDLE_SECONDS", 0.05)
        time.sleep(0.1)
        # Idle past the threshold: pinged, found dropped, replaced by a new connection.
        assert _backend_pid(engine) != first
    finally:
        engine.dispose()
        admin.dispose()
