"""Retired objects: copies no index row points at any more, kept until no reader holds them

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

An instance stored again under the `overwrite` duplicate policy points at its new copy from
the commit on; the old copy may still be read by a request that looked it up just before. It
is listed here, in the same transaction, and removed by the sweep once the grace period has
passed, so a reader sees the old or the new object, never an error, and a crash after the
commit leaves no orphan.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retired_objects",
        sa.Column("blob_key", sa.Text(), nullable=False),
        sa.Column("retired_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("blob_key", name="pk_retired_objects"),
    )
    op.create_index("ix_retired_objects_retired_at", "retired_objects", ["retired_at"])


def downgrade() -> None:
    op.drop_index("ix_retired_objects_retired_at", table_name="retired_objects")
    op.drop_table("retired_objects")
