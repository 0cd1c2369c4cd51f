"""The matching AST (dicom/matching.py) translated into SQL on the index columns.

Every value reaches the database as a bound parameter; only column choices come from code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, exists, or_, select, true
from sqlalchemy.sql.elements import ColumnElement as _Col

from dicomweb_server.dicom import attributes as a
from dicomweb_server.dicom.attributes import Level
from dicomweb_server.dicom.matching import Match, MatchKind
from dicomweb_server.index.sql.models import instances, series, studies


class Kind(StrEnum):
    TEXT = "text"
    NAME = "name"  # PN: case-insensitive, on each upper-cased component group
    INT = "int"


@dataclass(frozen=True)
class IndexedColumn:
    column: _Col[object]
    kind: Kind = Kind.TEXT
    # For names: the Ideographic and Phonetic group columns beside the Alphabetic one.
    groups: tuple[_Col[object], ...] = ()


COLUMNS: dict[Level, dict[int, IndexedColumn]] = {
    Level.STUDY: {
        a.STUDY_INSTANCE_UID: IndexedColumn(studies.c.study_instance_uid),
        a.PATIENT_ID: IndexedColumn(studies.c.patient_id),
        a.PATIENT_NAME: IndexedColumn(
            studies.c.patient_name,
            Kind.NAME,
            (studies.c.patient_name_ideographic, studies.c.patient_name_phonetic),
        ),
        a.PATIENT_BIRTH_DATE: IndexedColumn(studies.c.patient_birth_date),
        a.PATIENT_SEX: IndexedColumn(studies.c.patient_sex),
        a.STUDY_DATE: IndexedColumn(studies.c.study_date),
        a.STUDY_TIME: IndexedColumn(studies.c.study_time),
        a.ACCESSION_NUMBER: IndexedColumn(studies.c.accession_number),
        a.STUDY_ID: IndexedColumn(studies.c.study_id),
        a.STUDY_DESCRIPTION: IndexedColumn(studies.c.study_description),
        a.REFERRING_PHYSICIAN_NAME: IndexedColumn(
            studies.c.referring_physician_name,
            Kind.NAME,
            (
                studies.c.referring_physician_name_ideographic,
                studies.c.referring_physician_name_phonetic,
            ),
        ),
    },
    Level.SERIES: {
        a.SERIES_INSTANCE_UID: IndexedColumn(series.c.series_instance_uid),
        a.MODALITY: IndexedColumn(series.c.modality),
        a.SERIES_NUMBER: IndexedColumn(series.c.series_number, Kind.INT),
        a.SERIES_DESCRIPTION: IndexedColumn(series.c.series_description),
        a.PPS_START_DATE: IndexedColumn(series.c.performed_procedure_step_start_date),
        a.PPS_START_TIME: IndexedColumn(series.c.performed_procedure_step_start_time),
    },
    Level.INSTANCE: {
        a.SOP_INSTANCE_UID: IndexedColumn(instances.c.sop_instance_uid),
        a.SOP_CLASS_UID: IndexedColumn(instances.c.sop_class_uid),
        a.INSTANCE_NUMBER: IndexedColumn(instances.c.instance_number, Kind.INT),
    },
}


def matchable(level: Level) -> frozenset[int]:
    tags: set[int] = {a.MODALITIES_IN_STUDY}
    for lv in a.levels_above(level):
        tags |= set(COLUMNS[lv])
    return frozenset(tags)


def where(level: Level, matches: list[Match]) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = []
    columns: dict[int, IndexedColumn] = {}
    for lv in a.levels_above(level):
        columns.update(COLUMNS[lv])
    for match in matches:
        if match.tag == a.MODALITIES_IN_STUDY:
            # A study matches when any of its series has a matching Modality.
            # An alias: at series level the outer query reads `series` too, and the subquery
            # must not be correlated with it.
            other = series.alias("study_series")
            conditions.append(
                exists(
                    select(other.c.pk).where(
                        other.c.study_pk == studies.c.pk,
                        _condition(IndexedColumn(other.c.modality), match),
                    )
                )
            )
        else:
            conditions.append(_condition(columns[match.tag], match))
    return and_(true(), *conditions)


def _value(indexed: IndexedColumn, value: str) -> object:
    if indexed.kind is Kind.NAME:
        return value.upper()
    if indexed.kind is Kind.INT:
        return int(float(value))
    return value


def _condition(indexed: IndexedColumn, match: Match) -> ColumnElement[bool]:
    if indexed.kind is Kind.NAME and match.kind in (MatchKind.SINGLE, MatchKind.WILDCARD):
        return _name_condition(indexed, match)
    return _column_condition(indexed, match)


def _name_condition(indexed: IndexedColumn, match: Match) -> ColumnElement[bool]:
    """PS3.4 C.2.2.2.1: a name given with `=` separators matches group by group; a plain
    name matches any of the Alphabetic, Ideographic and Phonetic groups."""
    columns = (indexed.column, *indexed.groups)
    value = match.values[0]
    if "=" in value:
        parts = value.split("=")
        return and_(
            *(
                _column_condition(IndexedColumn(column, Kind.NAME), replace(match, values=(p,)))
                for column, p in zip(columns, parts, strict=False)
                if p
            )
        )
    return or_(*(_column_condition(IndexedColumn(c, Kind.NAME), match) for c in columns))


def _column_condition(indexed: IndexedColumn, match: Match) -> ColumnElement[bool]:
    column = indexed.column
    if match.kind is MatchKind.SINGLE:
        return column == _value(indexed, match.values[0])
    if match.kind is MatchKind.LIST:
        return column.in_([_value(indexed, v) for v in match.values])
    if match.kind is MatchKind.WILDCARD:
        return column.like(_like_pattern(str(_value(indexed, match.values[0]))), escape="\\")
    if match.kind is MatchKind.RANGE:
        # PS3.4 C.2.2.2.5: inclusive bounds; an absent bound leaves that side open.
        bounds: list[ColumnElement[bool]] = [column.is_not(None), column != ""]
        if match.lower is not None:
            bounds.append(column >= match.lower)
        if match.upper is not None:
            bounds.append(column <= _upper_bound(match.vr, match.upper))
        return and_(*bounds)
    return true()


def _upper_bound(vr: str, value: str) -> str:
    # A partial time such as "11" includes every time in that hour (PS3.4 C.2.2.2.5.1).
    if vr == "TM" and len(value) < 13:
        return value + "\x7f"
    return value


def _like_pattern(value: str) -> str:
    """PS3.4 C.2.2.2.4: `*` any sequence, `?` one character; SQL's own specials escaped."""
    out = []
    for ch in value:
        if ch in "\\%_":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


# Kept for the repository's ORDER BY: a stable order so limit/offset pages never overlap.
ORDER = {
    Level.STUDY: (studies.c.pk,),
    Level.SERIES: (series.c.pk,),
    Level.INSTANCE: (instances.c.pk,),
}
