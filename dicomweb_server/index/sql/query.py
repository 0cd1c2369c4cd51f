"""The matching AST (dicom/matching.py) translated into SQL on the index columns.

Every value reaches the database as a bound parameter; only column choices come from code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, exists, literal, or_, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement as _Col
from sqlalchemy.sql.functions import FunctionElement

from dicomweb_server.dicom import attributes as a
from dicomweb_server.dicom.attributes import Level
from dicomweb_server.dicom.matching import Match, MatchKind
from dicomweb_server.index.sql.models import instances, series, studies


class Kind(StrEnum):
    TEXT = "text"
    NAME = "name"  # PN: case-insensitive, on each upper-cased component group
    INT = "int"
    NUMBER = "number"


class JsonFirstValue(FunctionElement[Any]):
    """The first value of one attribute in a stored DICOM JSON text, as text.

    Rendered per database below, the tag key always a bound parameter. The variants are
    subclasses (not flags) so that each has its own entry in SQLAlchemy's statement cache.
    """

    type = Text()
    inherit_cache = True
    name = "json_first_value"

    def __init__(self, column: Any, tag: int) -> None:
        super().__init__(column, literal(f"{tag:08X}"))


class JsonFirstName(JsonFirstValue):
    """A person name's Alphabetic group, upper-cased."""

    inherit_cache = True


class JsonFirstNumber(JsonFirstValue):
    """A number, compared as a number."""

    inherit_cache = True


@compiles(JsonFirstValue, "sqlite")
def _sqlite_first(element: JsonFirstValue, compiler: Any, **kw: Any) -> str:
    column, key = (compiler.process(c, **kw) for c in element.clauses)
    name = isinstance(element, JsonFirstName)
    path = "'$.\"' || " + key + " || '\".Value[0]" + (".Alphabetic'" if name else "'")
    value = f"json_extract({column}, {path})"
    if name:
        return f"upper({value})"
    return f"CAST({value} AS REAL)" if isinstance(element, JsonFirstNumber) else value


@compiles(JsonFirstValue, "postgresql")
def _postgresql_first(element: JsonFirstValue, compiler: Any, **kw: Any) -> str:
    column, key = (compiler.process(c, **kw) for c in element.clauses)
    if isinstance(element, JsonFirstName):
        return f"upper(({column})::jsonb -> {key} -> 'Value' -> 0 ->> 'Alphabetic')"
    text = f"(({column})::jsonb -> {key} -> 'Value' ->> 0)"
    if isinstance(element, JsonFirstNumber):
        return f"CAST({text} AS DOUBLE PRECISION)"
    return text


# Where each level keeps the attributes that have no column of their own.
_ATTRIBUTES = {
    Level.STUDY: studies.c.attributes,
    Level.SERIES: series.c.attributes,
    Level.INSTANCE: instances.c.metadata,
}
_NUMBER_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"})


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
    """Tags with an index column at `level` or above (others match on the stored JSON)."""
    tags: set[int] = {a.MODALITIES_IN_STUDY}
    for lv in a.levels_above(level):
        tags |= set(COLUMNS[lv])
    return frozenset(tags)


def json_matchable(level: Level, tag: int) -> bool:
    """Whether `tag` can be matched on the stored DICOM JSON at `level`."""
    return a.level_of(tag) in a.levels_above(level) and a.vr_of(tag) not in (
        "SQ",
        "OB",
        "OD",
        "OF",
        "OL",
        "OV",
        "OW",
        "UN",
        "AT",
    )


def where(level: Level, matches: list[Match], fuzzy: bool = False) -> ColumnElement[bool]:
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
        elif match.tag in columns:
            indexed = columns[match.tag]
            if fuzzy and indexed.kind is Kind.NAME and match.kind is not MatchKind.RANGE:
                conditions.append(_fuzzy_name(indexed, match))
            else:
                conditions.append(_condition(indexed, match))
        else:
            conditions.append(_condition(_json_column(match), match))
    return and_(true(), *conditions)


def _fuzzy_name(indexed: IndexedColumn, match: Match) -> ColumnElement[bool]:
    """fuzzymatching=true: a name matches when one of its components, in any group, begins
    with a value given (case-insensitively; `*` and `?` keep their meaning)."""
    options = []
    for value in match.values:
        pattern = _like_pattern(value.upper())
        for column in (indexed.column, *indexed.groups):
            options.append(column.like(pattern + "%", escape="\\"))
            options.append(column.like("%^" + pattern + "%", escape="\\"))
    return or_(*options)


def _json_column(match: Match) -> IndexedColumn:
    """A matching key without a column: its first value in the level's stored JSON."""
    column = _ATTRIBUTES[a.level_of(match.tag)]
    if match.vr == "PN":
        return IndexedColumn(JsonFirstName(column, match.tag), Kind.NAME)
    if match.vr in _NUMBER_VRS:
        return IndexedColumn(JsonFirstNumber(column, match.tag), Kind.NUMBER)
    return IndexedColumn(JsonFirstValue(column, match.tag), Kind.TEXT)


def _value(indexed: IndexedColumn, value: str) -> object:
    if indexed.kind is Kind.NAME:
        return value.upper()
    if indexed.kind is Kind.INT:
        return int(float(value))
    if indexed.kind is Kind.NUMBER:
        return float(value)
    return value


def _condition(indexed: IndexedColumn, match: Match) -> ColumnElement[bool]:
    if (
        indexed.kind is Kind.NAME
        and indexed.groups
        and match.kind in (MatchKind.SINGLE, MatchKind.WILDCARD)
    ):
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
