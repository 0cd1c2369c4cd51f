"""The study list newest first: an index PostgreSQL reads as StudyDate DESC NULLS LAST

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03

QIDO-RS `orderby=-StudyDate` (the web application's usual order) puts empty dates last.
PostgreSQL reads the plain study_date index backward only as DESC NULLS FIRST, so without
this one it sorts every study for each page. SQLite needs none: its NULLs sort first, and
the plain index read backward is the order asked for.
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_studies_study_date_newest "
            "ON studies (study_date DESC NULLS LAST)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_studies_study_date_newest")
