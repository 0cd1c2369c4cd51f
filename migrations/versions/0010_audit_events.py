"""The audit trail's table: one row a DICOM Audit Message (PS3.15 A.5)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Written by the audit trail's background thread when DICOMWEB_AUDIT names `table`, read by
`GET /audit` (scope admin).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_Key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("pk", _Key, autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("event_id", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=2), nullable=False),
        sa.Column("requestor", sa.Text(), nullable=False),
        sa.Column("studies", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_at", table_name="audit_events")
    op.drop_table("audit_events")
