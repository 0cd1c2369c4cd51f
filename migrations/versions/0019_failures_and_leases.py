"""Failed credentials counted in the database, and leases for work one process does at a time

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07

`auth_failures`: one row per failed credential and sender (address or claimed key id), read
by every process, so N processes allow no more attempts than one. `leases`: the retention's
pruning is done by one process at a time, whichever holds the lease.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "auth_failures",
        sa.Column("pk", key, autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(160), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_auth_failures"),
    )
    op.create_index("ix_auth_failures_subject_at", "auth_failures", ["subject", "at"], unique=False)
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_index("ix_auth_failures_subject_at", table_name="auth_failures")
    op.drop_table("auth_failures")
