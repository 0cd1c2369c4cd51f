"""Stable studies and series: when an instance last arrived, whether its quiet period has
been announced

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02

Rows stored before this migration have no arrival time and are never announced.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("studies", "series"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("last_arrival", sa.Float(), nullable=True))
            batch.add_column(
                sa.Column("stable_announced", sa.Integer(), server_default="0", nullable=False)
            )
        op.create_index(
            f"ix_{table}_stable_announced_last_arrival",
            table,
            ["stable_announced", "last_arrival"],
        )


def downgrade() -> None:
    for table in ("studies", "series"):
        op.drop_index(f"ix_{table}_stable_announced_last_arrival", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("stable_announced")
            batch.drop_column("last_arrival")
