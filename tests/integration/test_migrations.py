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


def test_db_upgrade_command_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """`dicomweb-server db upgrade` takes the database from the settings alone."""
    import os
    import subprocess
    import sys

    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS cli CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA cli")
    url = pg_url + "?options=-csearch_path%3Dcli"
    command = [str(Path(sys.executable).parent / "dicomweb-server"), "db", "upgrade"]
    env = {**os.environ, "DICOMWEB_DATABASE_URL": url}
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    with engine.connect() as conn:
        tables = {
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'cli'"
            )
        }
    engine.dispose()
    assert {"studies", "series", "instances", "alembic_version"} <= tables
