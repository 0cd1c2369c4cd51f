"""Fill the Ideographic and Phonetic name columns of studies stored before 0002

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

Migration 0002 added the columns empty: a study stored before it kept NULL there, so a search
on the Ideographic or Phonetic group of its names missed it. The values are in the study's
stored DICOM JSON; only rows whose JSON has such a group are read and written, in batches, so
a populated archive upgrades in place.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_NAMES = {"00100010": "patient_name", "00080090": "referring_physician_name"}
_GROUPS = {"Ideographic": "_ideographic", "Phonetic": "_phonetic"}
_BATCH = 1000


def _columns(attributes: str) -> dict[str, str | None]:
    data = json.loads(attributes)
    out: dict[str, str | None] = {}
    for tag, column in _NAMES.items():
        values = (data.get(tag) or {}).get("Value") or [None]
        first = values[0] if isinstance(values[0], dict) else {}
        for group, suffix in _GROUPS.items():
            text = first.get(group)
            # As the index writes them (index/sql/repository.py): upper-cased.
            out[column + suffix] = str(text).upper() if text else None
    return out


def upgrade() -> None:
    bind = op.get_bind()
    studies = sa.table(
        "studies",
        sa.column("pk"),
        sa.column("attributes"),
        *(sa.column(c + s) for c in _NAMES.values() for s in _GROUPS.values()),
    )
    candidates = sa.or_(
        studies.c.attributes.like('%"Ideographic"%'), studies.c.attributes.like('%"Phonetic"%')
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(studies.c.pk, studies.c.attributes)
            .where(candidates, studies.c.pk > last)
            .order_by(studies.c.pk)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        for pk, attributes in rows:
            bind.execute(studies.update().where(studies.c.pk == pk).values(**_columns(attributes)))
        last = rows[-1][0]


def downgrade() -> None:
    # The columns belong to 0002; their values stay.
    pass
