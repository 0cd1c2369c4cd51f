"""The Alembic migrations build exactly the models, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Index, create_engine

from dicomweb_server.index.sql.migrate import upgrade
from dicomweb_server.index.sql.models import metadata, postgresql_only


def pg_schema(pg_url: str, name: str) -> str:
    """A fresh schema of the test database (the server fixture may share the database)."""
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    engine.dispose()
    return pg_url + f"?options=-csearch_path%3D{name}"


def _on_this_dialect(dialect: str):  # type: ignore[no-untyped-def]
    """Alembic compares every index of the models; the GIN ones exist on PostgreSQL only."""

    def include(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
        return not (
            type_ == "index"
            and dialect != "postgresql"
            and name is not None
            and isinstance(obj, Index)
            and postgresql_only(obj)
        )

    return include


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_models_and_migrations_do_not_drift(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        url = pg_schema(request.getfixturevalue("pg_url"), "drift")
    else:
        url = f"sqlite:///{tmp_path / 'drift.sqlite3'}"
    upgrade(url)
    upgrade(url)  # idempotent
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_object": _on_this_dialect(conn.dialect.name)}
            )
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_db_upgrade_command_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """`dicomweb-server db upgrade` takes the database from the settings alone."""
    import os
    import subprocess
    import sys

    url = pg_schema(pg_url, "cli")
    command = [str(Path(sys.executable).parent / "dicomweb-server"), "db", "upgrade"]
    env = {**os.environ, "DICOMWEB_DATABASE_URL": url}
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        tables = {
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'cli'"
            )
        }
    engine.dispose()
    assert {"studies", "series", "instances", "alembic_version"} <= tables


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_populated_archive_upgrades_in_place(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Stored under revision 0001 (before the name group columns), upgraded to head: every
    instance is still served and the old study is found by its Ideographic name group."""
    from alembic import command

    from dicomweb_server.index.sql.migrate import alembic_config
    from tests.conftest import make_settings
    from tests.factories import make_instance
    from tests.helpers import stow

    if backend == "postgresql":
        url = pg_schema(request.getfixturevalue("pg_url"), "populated")
    else:
        url = f"sqlite:///{tmp_path / 'populated.sqlite3'}"
    settings = make_settings(tmp_path, url)
    name = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    sent = [make_instance(patient_name=name, patient_id="OLD") for _ in range(3)]

    upgrade(url)
    _serve_and(settings, lambda client: stow(client, sent))
    # Back to the first schema: as if these studies had been stored by the first release.
    command.downgrade(alembic_config(url), "0001")
    upgrade(url)

    def found(client: httpx.Client) -> list[int]:
        hits = client.get("/studies", params={"PatientName": "山田^太郎"}).json()
        served = [
            client.get(
                f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                f"/instances/{ds.SOPInstanceUID}"
            ).status_code
            for ds in sent
        ]
        return [len(hits), *served]

    assert _serve_and(settings, found) == [3, 200, 200, 200]


def _serve_and(settings, action):  # type: ignore[no-untyped-def]
    """Run `action(client)` against a server on `settings` (schema as it is), then stop it."""
    from tests.conftest import private_server

    with private_server(settings, upgrade=False) as (client, _):
        return action(client)


def test_stored_json_becomes_jsonb_in_place(pg_url: str, tmp_path: Path) -> None:
    """Migration 0006 on a populated PostgreSQL archive: the stored DICOM JSON of studies,
    series and instances turns from text into jsonb, and every instance is still found by
    keys without a column (wildcard and exact) and served."""
    from alembic import command

    from dicomweb_server.index.sql.migrate import alembic_config
    from tests.conftest import make_settings
    from tests.factories import make_instance
    from tests.helpers import stow

    url = pg_schema(pg_url, "jsonb")
    settings = make_settings(tmp_path, url)
    sent = [make_instance() for _ in range(3)]
    for ds in sent:
        ds.InstitutionName = "OLD HOSPITAL"
    upgrade(url)
    _serve_and(settings, lambda client: stow(client, sent))
    command.downgrade(alembic_config(url), "0005")

    def column_types() -> set[str]:
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                return {
                    f"{table}.{column}:{kind}"
                    for table, column, kind in conn.exec_driver_sql(
                        "SELECT table_name, column_name, data_type FROM information_schema.columns"
                        " WHERE table_schema = 'jsonb' AND (table_name, column_name) IN"
                        " (('studies', 'attributes'), ('series', 'attributes'),"
                        " ('instances', 'metadata'))"
                    )
                }
        finally:
            engine.dispose()

    assert column_types() == {
        "studies.attributes:text", "series.attributes:text", "instances.metadata:text"
    }  # fmt: skip
    upgrade(url)
    assert column_types() == {
        "studies.attributes:jsonb", "series.attributes:jsonb", "instances.metadata:jsonb"
    }  # fmt: skip

    def served(client: httpx.Client) -> list[int]:
        hits = client.get("/series", params={"InstitutionName": "OLD*"}).json()
        exact = client.get("/series", params={"InstitutionName": "OLD HOSPITAL"}).json()
        codes = [
            client.get(
                f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                f"/instances/{ds.SOPInstanceUID}/metadata"
            ).status_code
            for ds in sent
        ]
        return [len(hits), len(exact), *codes]

    assert _serve_and(settings, served) == [3, 3, 200, 200, 200]
