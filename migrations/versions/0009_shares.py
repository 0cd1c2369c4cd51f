"""Share links with one-time codes: the shares, their sessions and every use

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

A share grants one study (or series) to whoever holds its link token, until it expires, is
used up (max_uses) or revoked; with a one-time code the link also needs the code. Redeeming
makes a short-lived session token. Only hashes of tokens and codes are kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_Key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "shares",
        sa.Column("share_id", sa.String(length=32), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=True),
        sa.Column("rights", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("uses", sa.Integer(), server_default="0", nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("code_sha256", sa.String(length=64), nullable=True),
        sa.Column("code_failures", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("share_id", name="pk_shares"),
    )
    op.create_table(
        "share_sessions",
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("share_id", sa.String(length=32), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["share_id"],
            ["shares.share_id"],
            name="fk_share_sessions_share_id_shares",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", name="pk_share_sessions"),
    )
    op.create_index("ix_share_sessions_share_id", "share_sessions", ["share_id"])
    op.create_table(
        "share_uses",
        sa.Column("pk", _Key, autoincrement=True, nullable=False),
        sa.Column("share_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("client", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["share_id"],
            ["shares.share_id"],
            name="fk_share_uses_share_id_shares",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name="pk_share_uses"),
    )
    op.create_index("ix_share_uses_share_id", "share_uses", ["share_id"])


def downgrade() -> None:
    op.drop_index("ix_share_uses_share_id", table_name="share_uses")
    op.drop_table("share_uses")
    op.drop_index("ix_share_sessions_share_id", table_name="share_sessions")
    op.drop_table("share_sessions")
    op.drop_table("shares")
