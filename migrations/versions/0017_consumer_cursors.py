"""Event consumers of plugins: how far each has been told, and which process tells it

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03

One row per consumer name: the sequence of the last change log entry it consumed, and a
lease (owner, until) so that one server process at a time hands it entries, in order.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consumer_cursors",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("leased_until", sa.Float(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("name", name="pk_consumer_cursors"),
    )


def downgrade() -> None:
    op.drop_table("consumer_cursors")
