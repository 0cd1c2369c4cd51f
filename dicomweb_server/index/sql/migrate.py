"""Apply the Alembic migrations programmatically (used by `serve` and `db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from dicomweb_server.index.sql.engine import make_engine

# pg_advisory_lock key: several processes starting at once upgrade one after the other.
_LOCK_KEY = 0x44_49_43_4F_4D_57_45_42  # "DICOMWEB"


def migrations_dir() -> Path:
    """The `migrations/` folder: beside the package in a checkout, inside it in a wheel."""
    package = Path(__file__).resolve().parents[2]
    for candidate in (package / "_data" / "migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("the Alembic migrations folder is missing from this installation")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the schema to the newest revision. On PostgreSQL a session advisory lock makes
    processes that start together (replicas, workers) take turns: the first upgrades, the
    others find nothing left to do."""
    config = alembic_config(url)
    if make_url(url).get_backend_name() != "postgresql":
        command.upgrade(config, "head")
        return
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as lock:
            lock.exec_driver_sql(f"SELECT pg_advisory_lock({_LOCK_KEY})")
            lock.commit()
            try:
                command.upgrade(config, "head")
            finally:
                lock.exec_driver_sql(f"SELECT pg_advisory_unlock({_LOCK_KEY})")
                lock.commit()
    finally:
        engine.dispose()


def pending(url: str) -> str | None:
    """None when the schema is at the newest revision, else what it is at (for `serve`
    with migrations left to a separate job)."""
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    return None if current == head else f"revision {current or 'none'}, newest {head}"
