"""Rejected instances (IOCM): hidden from every search and retrieval, their objects kept
until the purge delay has passed, restorable until then

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03

A rejection removes the instance's index rows (so QIDO-RS and WADO-RS answer at once, from
every process, as for a delete) and records its object here instead of retiring it. A
restore indexes the object again from the blob store; the purge retires what is older than
the delay.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rejected_objects",
        sa.Column("blob_key", sa.Text(), nullable=False),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("series_uid", sa.String(64), nullable=False),
        sa.Column("sop_uid", sa.String(64), nullable=False),
        sa.Column("code", sa.String(80), nullable=False),
        sa.Column("rejected_at", sa.Float(), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("blob_key", name="pk_rejected_objects"),
    )
    op.create_index("ix_rejected_objects_study_uid", "rejected_objects", ["study_uid"])
    op.create_index("ix_rejected_objects_rejected_at", "rejected_objects", ["rejected_at"])


def downgrade() -> None:
    op.drop_index("ix_rejected_objects_rejected_at", table_name="rejected_objects")
    op.drop_index("ix_rejected_objects_study_uid", table_name="rejected_objects")
    op.drop_table("rejected_objects")
