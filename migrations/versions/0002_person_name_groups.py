"""Index the Ideographic and Phonetic groups of person names

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = (
    "patient_name_ideographic",
    "patient_name_phonetic",
    "referring_physician_name_ideographic",
    "referring_physician_name_phonetic",
)


def upgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        for name in _COLUMNS:
            batch_op.add_column(sa.Column(name, sa.Text(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_studies_patient_name_ideographic"),
            ["patient_name_ideographic"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_studies_patient_name_ideographic"))
        for name in reversed(_COLUMNS):
            batch_op.drop_column(name)
