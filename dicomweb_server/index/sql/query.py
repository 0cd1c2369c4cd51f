"""The matching AST (dicom/matching.py) translated into SQL: the index columns for the
standard keys, the stored DICOM JSON for every other attribute.

Every value reaches the database as a bound parameter; only the shape comes from code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, case, exists, literal_column, or_, select, text, true
from sqlalchemy.sql.elements import ColumnElement as _Col

from dicomweb_server.dicom import attributes as a
from dicomweb_server.dicom import timezone
from dicomweb_server.dicom.matching import (
    Key,
    Match,
    MatchKind,
    SequenceMatch,
)
from dicomweb_server.dicom.vr import NUMBER_VRS, UNMATCHABLE_VRS
from dicomweb_server.index.sql.entities import ChildColumn, Entity, IndexedColumn, Kind


def matchable(entity: Entity) -> frozenset[int]:
    """Tags with an index column at `entity` or above (others match on the stored JSON)."""
    tags: set[int] = set()
    for each in entity.chain():
        tags |= set(each.columns) | set(each.children)
    return frozenset(tags)


def json_matchable(entity: Entity, tag: int) -> bool:
    """Whether `tag` can be matched on the stored DICOM JSON of `entity` or one above it."""
    return entity.owner(tag) is not None and a.vr_of(tag) not in UNMATCHABLE_VRS


def first_value(entity: Entity, tag: int, dialect: str) -> ColumnElement[Any]:
    """An attribute's first value for each row of a search of `entity`, to group by: its
    index column when it has one (names upper-cased, as kept there), else read from the
    stored JSON of the entity holding it."""
    for each in reversed(entity.chain()):
        if tag in each.columns:
            return each.columns[tag].column
    owner = entity.owner(tag) or entity
    return json_first(owner.json, tag, dialect)


def json_first(column: _Col[Any], tag: int, dialect: str) -> ColumnElement[Any]:
    """The first value of an attribute in a stored JSON column, as text (a name's Alphabetic
    group); the tag is a constant of the code, never a value from the request."""
    name = f"{column.table.name}.{column.name}"
    name_group = a.vr_of(tag) == "PN"
    if dialect == "postgresql":
        path = "-> 'Value' -> 0 ->> 'Alphabetic'" if name_group else "-> 'Value' ->> 0"
        return literal_column(f"({name} -> '{tag:08X}' {path})")
    tail = ".Alphabetic" if name_group else ""
    return literal_column(f"json_extract({name}, '$.\"{tag:08X}\".Value[0]{tail}')")


def where(
    entity: Entity,
    keys: list[Key],
    dialect: str,
    fuzzy: bool = False,
    timezone_offset: int | None = None,
) -> ColumnElement[bool]:
    """The keys of a search of `entity` (rows joined with the entities above it) as SQL."""
    columns: dict[int, IndexedColumn] = {}
    children: dict[int, ChildColumn] = {}
    for each in entity.chain():
        columns.update(each.columns)
        children.update(each.children)
    json = _JsonSql(dialect, fuzzy)

    def stored_json(tag: int) -> _Col[object]:
        owner = entity.owner(tag)
        return (owner or entity).json

    def condition(key: Key) -> ColumnElement[bool]:
        if isinstance(key, Match) and key.tag in children:
            return _some_child(children[key.tag], key)
        if isinstance(key, Match) and key.tag in columns:
            indexed = columns[key.tag]
            if fuzzy and indexed.kind is Kind.NAME and key.kind is not MatchKind.RANGE:
                return _fuzzy_name(indexed, key)
            return _condition(indexed, key)
        # Sequences and attributes without a column: the stored JSON of the entity holding it.
        return json.condition(stored_json(key.tag), key)

    conditions = []
    for key in keys:
        if isinstance(key, Match) and (
            (timezone_offset is not None and key.vr in ("DA", "TM", "DT"))
            or timezone.has_own_offset(key)
        ):
            query_offset = 0 if timezone_offset is None else timezone_offset
            here = stored_json(key.tag)
            conditions.append(_in_entity_timezone(key, query_offset, json, here, condition))
        else:
            conditions.append(condition(key))
    return and_(true(), *conditions)


def _in_entity_timezone(
    key: Match,
    query_offset: int,
    json: _JsonSql,
    stored: _Col[object],
    condition: Callable[[Key], ColumnElement[bool]],
) -> ColumnElement[bool]:
    """The key re-expressed at each entity's own TimezoneOffsetFromUTC (dicom/timezone.py):
    one CASE branch per offset in use; entities without one (or with an unusual one) are
    taken to be at the query's offset."""
    entity_offset = json.first_text(stored, a.TIMEZONE_OFFSET_FROM_UTC)
    whens = {}
    for offset, minutes in timezone.OFFSETS.items():
        adjusted = timezone.adjust(key, query_offset, minutes)
        if adjusted != (key,):
            whens[offset] = or_(*(condition(k) for k in adjusted))
    same = condition(key)
    if not whens:
        return same
    return case(whens, value=entity_offset, else_=same)


def _some_child(child: ChildColumn, match: Match) -> ColumnElement[bool]:
    """An attribute listing a column of the children (ModalitiesInStudy): a value matches
    when some child has it. An alias: at series level the outer query reads `series` too,
    and the subquery must not be correlated with it."""
    other = child.table.alias(f"child_{child.table.name}")
    parent_key = other.c[str(child.parent_key.key)]

    def some(m: Match) -> ColumnElement[bool]:
        return exists(
            select(other.c.pk).where(
                parent_key == child.parent_pk,
                _condition(IndexedColumn(other.c[str(child.column.key)]), m),
            )
        )

    if match.kind is MatchKind.EMPTY:
        return ~some(replace(match, kind=MatchKind.WILDCARD, values=("?*",)))
    if match.kind is MatchKind.ALL:
        return and_(
            *(some(replace(match, kind=MatchKind.SINGLE, values=(v,))) for v in match.values)
        )
    return some(match)


def _fuzzy_name(indexed: IndexedColumn, match: Match) -> ColumnElement[bool]:
    """fuzzymatching=true: a name matches when one of its components, in any group, begins
    with a value given (case-insensitively; `*` and `?` keep their meaning)."""
    if match.kind is MatchKind.EMPTY:
        return _condition(indexed, match)
    if match.kind is MatchKind.ALL:
        return and_(
            *(
                _fuzzy_name(indexed, replace(match, kind=MatchKind.SINGLE, values=(v,)))
                for v in match.values
            )
        )
    options = []
    for value in match.values:
        pattern = _like_pattern(fold(value))
        for column in (indexed.column, *indexed.groups):
            options.append(column.like(pattern + "%", escape="\\"))
            options.append(column.like("%^" + pattern + "%", escape="\\"))
    return or_(*options)


def fold(value: str) -> str:
    """Case folding for person names (PS3.4 C.2.2.2.1 allows case-insensitive matching):
    Python's upper-casing, as the index columns hold names."""
    return value.upper()


def _value(indexed: IndexedColumn, value: str) -> object:
    if indexed.kind is Kind.NAME:
        return fold(value)
    if indexed.kind is Kind.INT:
        return float(value)
    return value


def _condition(indexed: IndexedColumn, match: Match) -> ColumnElement[bool]:
    if match.kind is MatchKind.EMPTY:
        columns = (indexed.column, *indexed.groups)
        if indexed.kind is Kind.INT:
            return and_(*(c.is_(None) for c in columns))
        return and_(*(or_(c.is_(None), c == "") for c in columns))
    if match.kind is MatchKind.ALL:
        # A column holds one value: it holds all of those listed only if they are all it.
        return and_(
            *(
                _condition(indexed, replace(match, kind=MatchKind.SINGLE, values=(v,)))
                for v in match.values
            )
        )
    if indexed.kind is Kind.NAME and indexed.groups:
        if match.kind is MatchKind.LIST:
            return or_(
                *(
                    _name_condition(indexed, replace(match, kind=MatchKind.SINGLE, values=(v,)))
                    for v in match.values
                )
            )
        if match.kind in (MatchKind.SINGLE, MatchKind.WILDCARD):
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
    # A partial time such as "11" includes every time in that hour (PS3.4 C.2.2.2.5.1), and
    # a partial date-time every moment it covers: any value that begins with the bound.
    return value + "\x7f"


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


_ASCII_LOWER = "abcdefghijklmnopqrstuvwxyz"
_NAME_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


def fold_ascii(value: str) -> str:
    """Case folding for names held only in the JSON: ASCII letters, as both SQLite's
    upper() and the translate() used on PostgreSQL fold them."""
    return value.translate(str.maketrans(_ASCII_LOWER, _ASCII_LOWER.upper()))


class _JsonSql:
    """Keys matched on the DICOM JSON kept at ingest, as SQL for one dialect.

    An attribute's values are read with a table-valued function over a JSON path (SQLite
    json_each, PostgreSQL jsonb_path_query, both lax about absent attributes), so a
    multi-valued attribute matches when one of its values does, and a sequence when one of
    its items matches all of its keys (PS3.4 C.2.2.2.6). Values and paths are bound
    parameters; only the shape of the SQL comes from here. On PostgreSQL exact values at
    the top level are asked as JSONB containment (`@>`), which the GIN indexes serve.
    """

    def __init__(self, dialect: str, fuzzy: bool) -> None:
        self._pg = dialect == "postgresql"
        self._fuzzy = fuzzy
        self._n = 0
        self._params: dict[str, object] = {}

    def condition(self, column: _Col[object], key: Key) -> ColumnElement[bool]:
        self._params = {}
        name = f"{column.table.name}.{column.name}"
        # PostgreSQL keeps the JSON as jsonb (migration 0006): read where it lies.
        sql = self._key(name, key, top=True)
        return and_(text(sql).bindparams(**self._params))

    def first_text(self, column: _Col[object], tag: int) -> ColumnElement[str]:
        """The first value of an attribute in a level's stored JSON, as text (the tag is a
        constant of the code, not a value from the request)."""
        name = f"{column.table.name}.{column.name}"
        if self._pg:
            sql = f"({name} -> '{tag:08X}' -> 'Value' ->> 0)"
        else:
            sql = f"json_extract({name}, '$.\"{tag:08X}\".Value[0]')"
        return literal_column(sql)

    def _bind(self, value: object) -> str:
        self._n += 1
        name = f"j{self._n}"
        self._params[name] = value
        return ":" + name

    def _alias(self) -> str:
        self._n += 1
        return f"je{self._n}"

    def _each(self, source: str, tag: int, alias: str) -> str:
        if self._pg:
            path = self._bind(f'$."{tag:08X}".Value[*]')
            return f"jsonb_path_query({source}, CAST({path} AS jsonpath)) AS {alias}(value)"
        path = self._bind(f'$."{tag:08X}".Value')
        return f"json_each({source}, {path}) AS {alias}"

    def _key(self, source: str, key: Key, top: bool = False) -> str:
        alias = self._alias()
        if isinstance(key, SequenceMatch):
            inner = " AND ".join(self._key(f"{alias}.value", k) for k in key.keys)
            return f"EXISTS (SELECT 1 FROM {self._each(source, key.tag, alias)} WHERE {inner})"
        if key.kind is MatchKind.EMPTY:
            if self._pg:
                held = f"{alias}.value NOT IN (CAST('null' AS jsonb), CAST('\"\"' AS jsonb))"
            else:
                held = f"{alias}.type <> 'null' AND {alias}.value <> ''"
            return f"NOT EXISTS (SELECT 1 FROM {self._each(source, key.tag, alias)} WHERE {held})"
        if key.kind is MatchKind.ALL:
            return " AND ".join(
                self._key(source, replace(key, kind=MatchKind.SINGLE, values=(v,)), top)
                for v in key.values
            )
        if (
            self._pg
            and top
            and key.kind in (MatchKind.SINGLE, MatchKind.LIST)
            and key.vr not in NUMBER_VRS
            and key.vr != "PN"
        ):
            docs = (
                self._bind(orjson.dumps({f"{key.tag:08X}": {"Value": [v]}}).decode())
                for v in key.values
            )
            return "(" + " OR ".join(f"{source} @> CAST({d} AS jsonb)" for d in docs) + ")"
        test = self._value_condition(alias, key)
        return f"EXISTS (SELECT 1 FROM {self._each(source, key.tag, alias)} WHERE {test})"

    def _value_condition(self, alias: str, match: Match) -> str:
        if match.vr == "PN":
            return self._name(alias, match)
        if match.vr in NUMBER_VRS:
            if self._pg:
                value = (
                    f"CASE WHEN jsonb_typeof({alias}.value) = 'number' "
                    f"THEN CAST({alias}.value AS double precision) END"
                )
            else:
                value = f"CASE WHEN {alias}.type IN ('integer', 'real') THEN {alias}.value END"
            return self._compare(value, match, float)
        value = f"({alias}.value #>> '{{}}')" if self._pg else f"{alias}.value"
        return self._compare(value, match, str)

    def _group(self, alias: str, group: str) -> str:
        if self._pg:
            return (
                f"translate({alias}.value ->> '{group}', "
                f"'{_ASCII_LOWER}', '{_ASCII_LOWER.upper()}')"
            )
        return (
            f"CASE WHEN {alias}.type = 'object' "
            f"THEN upper(json_extract({alias}.value, '$.{group}')) END"
        )

    def _name(self, alias: str, match: Match) -> str:
        """PS3.4 C.2.2.2.1: names compare case-insensitively; a value with `=` matches group
        by group, a plain one any of the Alphabetic, Ideographic and Phonetic groups."""
        if match.kind is MatchKind.LIST:
            return (
                "("
                + " OR ".join(
                    self._name(alias, replace(match, kind=MatchKind.SINGLE, values=(v,)))
                    for v in match.values
                )
                + ")"
            )
        if self._fuzzy and match.kind is not MatchKind.RANGE:
            pattern = _like_pattern(fold_ascii(match.values[0]))
            options = []
            for group in _NAME_GROUPS:
                column = self._group(alias, group)
                for like in (pattern + "%", "%^" + pattern + "%"):
                    options.append(f"{column} LIKE {self._bind(like)} ESCAPE '\\'")
            return "(" + " OR ".join(options) + ")"
        value = match.values[0]
        if "=" in value:
            parts = [
                self._compare(self._group(alias, g), replace(match, values=(p,)), fold_ascii)
                for g, p in zip(_NAME_GROUPS, value.split("="), strict=False)
                if p
            ]
            return "(" + " AND ".join(parts or ["1 = 1"]) + ")"
        return (
            "("
            + " OR ".join(
                self._compare(self._group(alias, g), match, fold_ascii) for g in _NAME_GROUPS
            )
            + ")"
        )

    def _compare(self, value: str, match: Match, convert: Callable[[str], object]) -> str:
        if match.kind is MatchKind.SINGLE:
            return f"{value} = {self._bind(convert(match.values[0]))}"
        if match.kind is MatchKind.LIST:
            listed = ", ".join(self._bind(convert(v)) for v in match.values)
            return f"{value} IN ({listed})"
        if match.kind is MatchKind.WILDCARD:
            pattern = _like_pattern(str(convert(match.values[0])))
            return f"{value} LIKE {self._bind(pattern)} ESCAPE '\\'"
        if match.kind is MatchKind.RANGE:
            # Byte order, whatever the database's collation.
            text_value = f'{value} COLLATE "C"' if self._pg else value
            bounds = [f"{value} <> ''"]
            if match.lower is not None:
                bounds.append(f"{text_value} >= {self._bind(match.lower)}")
            if match.upper is not None:
                bounds.append(f"{text_value} <= {self._bind(_upper_bound(match.vr, match.upper))}")
            return "(" + " AND ".join(bounds) + ")"
        return "1 = 1"
