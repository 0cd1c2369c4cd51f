"""Original versions of corrected instances: the object as first stored, kept while the
instance is

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03

A correction (patient or study attributes) stores a new copy of each instance and points the
index at it; the copy it replaces, when it is the instance's first, is recorded here instead
of being retired, so the original stays retrievable (Microsoft's `msdicom-request-original`).
A later correction retires the intermediate copy; a delete retires the original too.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "original_versions",
        sa.Column("sop_uid", sa.String(64), nullable=False),
        sa.Column("blob_key", sa.Text(), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("replaced_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("sop_uid", name="pk_original_versions"),
    )


def downgrade() -> None:
    op.drop_table("original_versions")
