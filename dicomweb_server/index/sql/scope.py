"""A caller's study scope as a WHERE clause over the studies (and series) joined in a query.

Every search and retrieve statement gets it, so a limited caller's QIDO pages, counts and
retrieves all see the same studies; outside them a study is as absent as one never stored.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, or_, select

from dicomweb_server.index.sql.models import series, studies, study_labels
from dicomweb_server.services.context import StudyScope


def visible(scope: StudyScope, with_series: bool) -> ColumnElement[bool]:
    """The studies of `scope`; with `with_series` (the series table is joined), also only
    its series when it names some."""
    parts: list[ColumnElement[bool]] = []
    if scope.labels:
        labelled = select(study_labels.c.study_pk).where(
            study_labels.c.label.in_(sorted(scope.labels))
        )
        parts.append(studies.c.pk.in_(labelled))
    if scope.patient_ids:
        parts.append(studies.c.patient_id.in_(sorted(scope.patient_ids)))
    if scope.study_uids:
        parts.append(studies.c.study_instance_uid.in_(sorted(scope.study_uids)))
    clause = or_(*parts) if parts else false()
    if with_series and scope.series_uids is not None:
        clause = and_(clause, series.c.series_instance_uid.in_(sorted(scope.series_uids)))
    return clause


def limited(stmt: Select[Any], scope: StudyScope | None, with_series: bool) -> Select[Any]:
    """`stmt` limited to the scope (unchanged for a caller who may see every study)."""
    return stmt if scope is None else stmt.where(visible(scope, with_series))
