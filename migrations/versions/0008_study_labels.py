"""Access-control labels of the studies, and the labels an API key is limited to

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

A study carries any number of labels (from the ingest rule DICOMWEB_LABEL_ATTRIBUTES, or set
by an admin); a key or token limited to labels sees only the studies carrying one of them, in
every query (QIDO pages agree) and every retrieve (404 outside).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# SQLite only gives an auto-increment rowid to INTEGER PRIMARY KEY.
_Key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "study_labels",
        sa.Column("study_pk", _Key, nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_pk"],
            ["studies.pk"],
            name="fk_study_labels_study_pk_studies",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("study_pk", "label", name="pk_study_labels"),
    )
    op.create_index("ix_study_labels_label", "study_labels", ["label"])
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("labels", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("labels")
    op.drop_index("ix_study_labels_label", table_name="study_labels")
    op.drop_table("study_labels")
