"""UPS-RS: workitems, their subscriptions, the event reports of each subscriber

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

On PostgreSQL the workitems' DICOM JSON is jsonb with a GIN index, and the matched text
columns compare byte by byte (the "C" collation), as the studies' do (0003, 0006).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_Key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_MATCHED = (
    ("uid", "varchar(64)"),
    ("state", "varchar(16)"),
    ("priority", "varchar(16)"),
    ("procedure_step_label", "text"),
    ("worklist_label", "text"),
    ("input_readiness_state", "varchar(16)"),
    ("patient_id", "text"),
    ("patient_name", "text"),
    ("patient_name_ideographic", "text"),
    ("patient_name_phonetic", "text"),
)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    json_type = sa.Text()
    if postgresql:
        from sqlalchemy.dialects.postgresql import JSONB

        json_type = JSONB()
    op.create_table(
        "workitems",
        sa.Column("pk", _Key, autoincrement=True, nullable=False),
        sa.Column("uid", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("transaction_uid", sa.String(length=64), nullable=True),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=True),
        sa.Column("procedure_step_label", sa.Text(), nullable=True),
        sa.Column("worklist_label", sa.Text(), nullable=True),
        sa.Column("input_readiness_state", sa.String(length=16), nullable=True),
        sa.Column("patient_id", sa.Text(), nullable=True),
        sa.Column("patient_name", sa.Text(), nullable=True),
        sa.Column("patient_name_ideographic", sa.Text(), nullable=True),
        sa.Column("patient_name_phonetic", sa.Text(), nullable=True),
        sa.Column("attributes", json_type, nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("pk", name="pk_workitems"),
        sa.UniqueConstraint("uid", name="uq_workitems_uid"),
    )
    op.create_index("ix_workitems_state_finished_at", "workitems", ["state", "finished_at"])
    op.create_index("ix_workitems_patient_id", "workitems", ["patient_id"])
    op.create_index("ix_workitems_patient_name", "workitems", ["patient_name"])
    if postgresql:
        op.execute(
            "ALTER TABLE workitems "
            + ", ".join(f'ALTER COLUMN {name} TYPE {type_} COLLATE "C"' for name, type_ in _MATCHED)
        )
        op.execute(
            "CREATE INDEX ix_workitems_attributes_gin ON workitems "
            "USING gin (attributes jsonb_path_ops)"
        )
    op.create_table(
        "workitem_subscriptions",
        sa.Column("pk", _Key, autoincrement=True, nullable=False),
        sa.Column("aetitle", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("filter", sa.Text(), nullable=True),
        sa.Column("deletion_lock", sa.Integer(), server_default="0", nullable=False),
        sa.Column("suspended", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_workitem_subscriptions"),
        sa.UniqueConstraint("aetitle", "target", name="uq_workitem_subscriptions_aetitle"),
    )
    op.create_index("ix_workitem_subscriptions_target", "workitem_subscriptions", ["target"])
    op.create_table(
        "workitem_events",
        sa.Column("seq", _Key, autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("aetitle", sa.String(length=16), nullable=False),
        sa.Column("workitem_uid", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.Integer(), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_workitem_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_workitem_events_aetitle_seq", "workitem_events", ["aetitle", "seq"])
    op.create_table(
        "workitem_receivers",
        sa.Column("aetitle", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("delivered", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("connected_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("aetitle", name="pk_workitem_receivers"),
    )


def downgrade() -> None:
    op.drop_table("workitem_receivers")
    op.drop_index("ix_workitem_events_aetitle_seq", table_name="workitem_events")
    op.drop_table("workitem_events")
    op.drop_index("ix_workitem_subscriptions_target", table_name="workitem_subscriptions")
    op.drop_table("workitem_subscriptions")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_workitems_attributes_gin")
    op.drop_index("ix_workitems_patient_name", table_name="workitems")
    op.drop_index("ix_workitems_patient_id", table_name="workitems")
    op.drop_index("ix_workitems_state_finished_at", table_name="workitems")
    op.drop_table("workitems")
