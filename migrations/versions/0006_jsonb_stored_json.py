"""PostgreSQL: the stored DICOM JSON becomes jsonb, with GIN indexes on the columns

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

Keys without an index column match on the stored DICOM JSON (issue 5). Kept as text, every
such query cast each row's JSON to jsonb again (a wildcard over 40,000 series read and parsed
all of them); as jsonb it is parsed once, when written. The expression indexes of 0003 on the
cast give way to GIN indexes (jsonb_path_ops, for `@>`) on the columns themselves.

The conversion is in place (ALTER COLUMN ... TYPE jsonb USING), one table rewrite each under
an exclusive lock: plan a pause in writes for a large archive. jsonb cannot hold the escape
\\u0000, but none is there: the expression indexes of 0003 kept it out of these columns, and
ingest drops NUL characters. SQLite keeps its text columns (JSON1 reads them).
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("ix_studies_attributes_gin", "studies", "attributes"),
    ("ix_series_attributes_gin", "series", "attributes"),
    ("ix_instances_metadata_gin", "instances", "metadata"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for index, table, column in _COLUMNS:
        op.execute(f"DROP INDEX IF EXISTS {index}")
        op.execute(
            f"ALTER TABLE {table} ALTER COLUMN {column} TYPE jsonb USING CAST({column} AS jsonb)"
        )
        op.execute(f"CREATE INDEX {index} ON {table} USING gin ({column} jsonb_path_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for index, table, column in _COLUMNS:
        op.execute(f"DROP INDEX IF EXISTS {index}")
        op.execute(
            f"ALTER TABLE {table} ALTER COLUMN {column} TYPE text USING CAST({column} AS text)"
        )
        op.execute(
            f"CREATE INDEX {index} ON {table} USING gin ((CAST({column} AS jsonb)) jsonb_path_ops)"
        )
