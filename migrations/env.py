"""Alembic environment: the same migrations for SQLite and PostgreSQL.

The URL comes from the caller (`dicomweb-server db upgrade` passes the configured one); batch
mode makes ALTER TABLE work on SQLite.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from dicomweb_server.index.sql.engine import make_engine
from dicomweb_server.index.sql.models import metadata

config = context.config


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(str(config.get_main_option("sqlalchemy.url")))
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


def _run(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        # Batch mode rebuilds a SQLite table by copy, drop and rename: with foreign keys on,
        # dropping the old `studies` would cascade to every series and instance row. The
        # pragma only takes effect outside a transaction, so it goes to the driver directly.
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute("PRAGMA foreign_keys=OFF")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
