"""The Alembic migrations build exactly the models, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from dicomweb_server.index.sql.migrate import upgrade
from dicomweb_server.index.sql.models import metadata


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_models_and_migrations_do_not_drift(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        url = request.getfixturevalue("pg_url")
        # The server fixture may share this database: a schema of its own keeps this clean.
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA IF EXISTS drift CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA drift")
        url = url + "?options=-csearch_path%3Ddrift"
        engine.dispose()
    else:
        url = f"sqlite:///{tmp_path / 'drift.sqlite3'}"
    upgrade(url)
    upgrade(url)  # idempotent
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert diff == []
