"""The change log: one row per change to the archive, in the change's own transaction

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

Read by the change feed (`GET {root}/changefeed`), the live streams and the webhooks.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_Key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("seq", _Key, autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=True),
        sa.Column("sop_uid", sa.String(length=64), nullable=True),
        sa.Column("blob_key", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_changes"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_changes_study_uid", "changes", ["study_uid"])


def downgrade() -> None:
    op.drop_index("ix_changes_study_uid", table_name="changes")
    op.drop_table("changes")
