"""PostgreSQL: GIN indexes on the stored DICOM JSON, byte-order collation for matching

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Any attribute is a QIDO-RS key (issue 5). On PostgreSQL exact values are asked as JSONB
containment on the stored JSON text cast to jsonb; these expression indexes (jsonb_path_ops,
the smaller operator class that serves `@>`) answer them without reading every row.

The matched text columns get the "C" collation: DICOM values compare byte by byte (date and
time ranges), and `LIKE 'PREFIX%'` can then use the plain B-tree indexes whatever the
database's default collation. SQLite compares bytes already: nothing changes there.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_GIN = (
    ("ix_studies_attributes_gin", "studies", "attributes"),
    ("ix_series_attributes_gin", "series", "attributes"),
    ("ix_instances_metadata_gin", "instances", "metadata"),
)

_C_COLUMNS = {
    "studies": (
        ("patient_id", "text"),
        ("patient_name", "text"),
        ("patient_name_ideographic", "text"),
        ("patient_name_phonetic", "text"),
        ("patient_birth_date", "varchar(8)"),
        ("patient_sex", "text"),
        ("study_date", "varchar(8)"),
        ("study_time", "varchar(16)"),
        ("accession_number", "text"),
        ("study_id", "text"),
        ("study_description", "text"),
        ("referring_physician_name", "text"),
        ("referring_physician_name_ideographic", "text"),
        ("referring_physician_name_phonetic", "text"),
    ),
    "series": (
        ("modality", "text"),
        ("series_description", "text"),
        ("performed_procedure_step_start_date", "varchar(8)"),
        ("performed_procedure_step_start_time", "varchar(16)"),
    ),
}


def upgrade() -> None:
    # A plain name matches any of its three groups: with all three indexed, the OR is
    # answered from indexes (PostgreSQL BitmapOr, SQLite's OR optimisation).
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_studies_patient_name_phonetic"), ["patient_name_phonetic"], unique=False
        )
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in _C_COLUMNS.items():
        alters = ", ".join(
            f'ALTER COLUMN {name} TYPE {type_} COLLATE "C"' for name, type_ in columns
        )
        op.execute(f"ALTER TABLE {table} {alters}")
    for name, table, column in _GIN:
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} "
            f"USING gin ((CAST({column} AS jsonb)) jsonb_path_ops)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, _table, _column in _GIN:
            op.execute(f"DROP INDEX IF EXISTS {name}")
        for table, columns in _C_COLUMNS.items():
            alters = ", ".join(
                f'ALTER COLUMN {name} TYPE {type_} COLLATE "default"' for name, type_ in columns
            )
            op.execute(f"ALTER TABLE {table} {alters}")
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_studies_patient_name_phonetic"))
