"""QIDO-RS query parameters (PS3.18 8.3.4) parsed into a small matching AST.

The matching types are those of PS3.4 C.2.2.2: single value, list of UIDs, universal,
wildcard and range. The AST is pure data; the index adapter translates it into its query
language, so every rule about what a value means lives here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dicomweb_server.dicom import numbers, uids
from dicomweb_server.dicom.attributes import (
    TIMEZONE_OFFSET_FROM_UTC,
    keyword_of,
    tag_of_keyword,
    vr_of,
)
from dicomweb_server.dicom.depth import check_path
from dicomweb_server.dicom.errors import InvalidAttribute, InvalidQuery, InvalidUID
from dicomweb_server.dicom.temporal import SHAPES, WRITTEN, calendar_fault
from dicomweb_server.dicom.vr import (
    MULTIPLE_VALUE_VRS,
    NUMBER_VRS,
    RANGE_VRS,
    UNMATCHABLE_VRS,
    WILDCARD_VRS,
)


class MatchKind(StrEnum):
    UNIVERSAL = "universal"  # PS3.4 C.2.2.2.3
    SINGLE = "single"  # C.2.2.2.1
    LIST = "list"  # C.2.2.2.2 (UIDs); for other VRs any one of the values listed
    WILDCARD = "wildcard"  # C.2.2.2.4
    RANGE = "range"  # C.2.2.2.5
    EMPTY = "empty"  # `""` with emptyvaluematching=true (PS3.18 8.3.4): no value at all
    ALL = "all"  # `a\b` with multiplevaluematching=true: every value listed is held


@dataclass(frozen=True)
class Match:
    """One key on one attribute. A multi-valued attribute matches when any of its values
    does (for ALL: when every value listed is among its values)."""

    tag: int
    vr: str
    kind: MatchKind
    values: tuple[str, ...] = ()
    lower: str | None = None
    upper: str | None = None

    def __post_init__(self) -> None:
        # Every kind that compares values has at least one: an empty list would reach the
        # index as `IN ()`, which no database takes.
        if self.kind in _VALUED and not self.values:
            raise InvalidQuery(f"{keyword_of(self.tag) or f'{self.tag:08X}'} holds no value")


_VALUED = frozenset({MatchKind.SINGLE, MatchKind.LIST, MatchKind.WILDCARD, MatchKind.ALL})


@dataclass(frozen=True)
class SequenceMatch:
    """PS3.4 C.2.2.2.6: the entity matches when one item of the sequence matches every key."""

    tag: int
    keys: tuple[Key, ...]


Key = Match | SequenceMatch


@dataclass
class SearchRequest:
    matches: list[Key] = field(default_factory=list)
    include_fields: set[int] = field(default_factory=set)
    include_all: bool = False
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False
    empty_value_matching: bool = False
    multiple_value_matching: bool = False
    # TimezoneOffsetFromUTC given as a key: the query's dates and times are local to it,
    # in minutes east of UTC (dicom/timezone.py adjusts them to each entity's offset).
    timezone_offset: int | None = None
    # Parameters understood but not honoured: each becomes a `Warning: 299` header.
    warnings: list[str] = field(default_factory=list)
    # `orderby` (dcm4chee's extension of QIDO-RS, which PS3.18 lacks): the attributes the
    # results are sorted by, each with whether it is descending.
    order: list[tuple[int, bool]] = field(default_factory=list)

    def matching_keys(self) -> list[Key]:
        """The keys with something to match: a universal key only asks for its attribute."""
        return [
            m for m in self.matches if not (isinstance(m, Match) and m.kind is MatchKind.UNIVERSAL)
        ]


# PS3.4 C.2.2.2.5.1 ranges; a DT may carry its own UTC offset (&ZZXX).
# Patterns are matched whole (fullmatch: `$` would take a trailing newline) and ASCII (`\d`
# would take any script's digits).
_OFFSET = re.compile(r"([+-])(\d{2})(\d{2})", re.ASCII)
_HEX_TAG = re.compile(r"[0-9A-Fa-f]{8}", re.ASCII)
_NUMBER = re.compile(r"[+-]?(\d{1,400}(\.\d{0,400})?|\.\d{1,400})([eE][+-]?\d{1,4})?", re.ASCII)
_MAX_LIMIT = 999_999_999
EMPTY_VALUE = '""'


def parse_offset(value: str) -> int:
    """TimezoneOffsetFromUTC, `+HHMM` or `-HHMM` (PS3.3 C.12.1.1.8), in minutes east of UTC."""
    found = _OFFSET.fullmatch(value)
    if not found or int(found.group(2)) > 14 or int(found.group(3)) > 59:
        raise InvalidQuery(
            f"TimezoneOffsetFromUTC must be +HHMM or -HHMM (hours up to 14), not {value!r}"
        )
    minutes = int(found.group(2)) * 60 + int(found.group(3))
    return -minutes if found.group(1) == "-" else minutes


def parse_attribute_id(text: str) -> int:
    """A keyword (`PatientName`) or an 8-hex tag (`00100010`), PS3.18 8.3.4.1."""
    if _HEX_TAG.fullmatch(text):
        return int(text, 16)
    tag = tag_of_keyword(text)
    if tag is None:
        raise InvalidAttribute(f"{text!r} is neither a DICOM keyword nor a tag (8 hex digits)")
    return tag


def parse_attribute_path(text: str) -> tuple[int, ...]:
    """An attribute ID or a dotted path into sequences (`00400275.00400009`,
    `RequestAttributesSequence.ScheduledProcedureStepID`), PS3.18 8.3.4.1."""
    parts = text.split(".")
    check_path(parts, f"the key path {text[:40]!r}...")
    tags = tuple(parse_attribute_id(part) for part in parts)
    for tag in tags[:-1]:
        if vr_of(tag) != "SQ":
            raise InvalidAttribute(f"{text!r}: {keyword_of(tag)} is not a sequence")
    return tags


# An orderby value names at most this many attributes.
MAX_ORDER_KEYS = 8


def parse_order(value: str) -> list[tuple[int, bool]]:
    """`orderby=-StudyDate,PatientName`: attribute keywords or tags, comma-separated, each
    descending with a leading `-` (dcm4chee's form)."""
    found = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        descending = item.startswith("-")
        found.append((parse_attribute_id(item.lstrip("+-")), descending))
    if len(found) > MAX_ORDER_KEYS:
        raise InvalidQuery(f"orderby names at most {MAX_ORDER_KEYS} attributes")
    return found


def parse_search(params: Iterable[tuple[str, str]]) -> SearchRequest:
    request = SearchRequest()
    keys: list[tuple[str, str]] = []
    for name, value in params:
        # No DICOM value holds a NUL outside padding, and PostgreSQL refuses one in text.
        if "\x00" in name or "\x00" in value:
            raise InvalidQuery(f"query parameter {name!r} contains a NUL character")
        lowered = name.lower()
        if lowered == "limit":
            request.limit = _count(name, value)
        elif lowered == "offset":
            request.offset = _count(name, value)
        elif lowered == "includefield":
            for item in value.split(","):
                item = item.strip()
                if item.lower() == "all":
                    request.include_all = True
                elif item:
                    # A path into a sequence returns the whole top-level sequence.
                    request.include_fields.add(parse_attribute_path(item)[0])
        elif lowered == "orderby":
            request.order.extend(parse_order(value))
        elif lowered == "fuzzymatching":
            request.fuzzy = parse_boolean(name, value)
        elif lowered == "emptyvaluematching":
            request.empty_value_matching = parse_boolean(name, value)
        elif lowered == "multiplevaluematching":
            request.multiple_value_matching = parse_boolean(name, value)
        else:
            keys.append((name, value))
    # The flags may come after the keys they change, so keys are read once all are known.
    tree: dict[int, Any] = {}
    for name, value in keys:
        path = parse_attribute_path(name)
        if path == (TIMEZONE_OFFSET_FROM_UTC,) and value:
            request.timezone_offset = parse_offset(value)
            continue
        if len(path) == 1:
            match = parse_match(
                name, value, request.empty_value_matching, request.multiple_value_matching
            )
            request.matches.append(match)
            continue
        node = tree.setdefault(path[0], {})
        for tag in path[1:-1]:
            node = node.setdefault(tag, {})
        node.setdefault(path[-1], []).append(
            parse_match(name, value, request.empty_value_matching, request.multiple_value_matching)
        )
    for tag, node in tree.items():
        request.matches.append(_sequence(tag, node))
    return request


def _sequence(tag: int, node: dict[int, Any]) -> Key:
    """Keys under one sequence apply to one and the same item; universal keys drop out, and
    a sequence left with none is itself universal (C.2.2.2.6)."""
    keys: list[Key] = []
    for child, value in node.items():
        if isinstance(value, dict):
            keys.append(_sequence(child, value))
        else:
            keys.extend(value)
    kept = tuple(k for k in keys if not (isinstance(k, Match) and k.kind is MatchKind.UNIVERSAL))
    if not kept:
        return Match(tag, "SQ", MatchKind.UNIVERSAL)
    return SequenceMatch(tag, kept)


def parse_match(
    name: str, value: str, empty_value_matching: bool = False, multiple_value_matching: bool = False
) -> Match:
    tag = parse_attribute_path(name)[-1]
    vr = vr_of(tag)
    if value == "":
        return Match(tag, vr, MatchKind.UNIVERSAL)
    if vr == "SQ":
        raise InvalidQuery(
            f"{name}: a sequence key takes no value; match on the attributes inside it "
            "(e.g. 00400275.00401001=value)"
        )
    if vr in UNMATCHABLE_VRS:
        raise InvalidQuery(f"{name}: values of VR {vr} cannot be matched")
    if empty_value_matching and value == EMPTY_VALUE:
        return Match(tag, vr, MatchKind.EMPTY)
    if vr == "UI":
        values = tuple(v for v in re.split(r"[,\\]", value) if v)
        for v in values:
            if "*" in v or "?" in v:
                raise InvalidQuery(f"{name}: wildcards are not allowed on UIDs (PS3.4 C.2.2.2.4)")
            try:
                uids.require_uid(v, f"{name} value")
            except InvalidUID as exc:
                raise InvalidQuery(str(exc)) from None
        if len(values) == 1:
            return Match(tag, vr, MatchKind.SINGLE, values)
        return Match(tag, vr, MatchKind.LIST, values)
    if vr in RANGE_VRS and "-" in value and not (vr == "DT" and SHAPES["DT"].fullmatch(value)):
        lower, upper = _split_range(name, vr, value)
        return Match(tag, vr, MatchKind.RANGE, lower=lower or None, upper=upper or None)
    if "*" in value or "?" in value:
        if vr not in WILDCARD_VRS:
            raise InvalidQuery(f"{name}: wildcards are not allowed on {vr} values")
        if multiple_value_matching and "\\" in value:
            raise InvalidQuery(f"{name}: wildcards cannot be combined with multiple values")
        return Match(tag, vr, MatchKind.WILDCARD, (value,))
    separators = r"[,\\]" if vr == "CS" else r"\\"
    values = tuple(v for v in re.split(separators, value) if v)
    for v in values:
        if vr in RANGE_VRS:
            _check_temporal(name, vr, v)
        elif vr in NUMBER_VRS and not _NUMBER.fullmatch(v):
            raise InvalidQuery(f"{name}: {v!r} is not a number")
    if not values:
        raise InvalidQuery(f"{name}: {value!r} holds no value")
    if len(values) == 1:
        return Match(tag, vr, MatchKind.SINGLE, values)
    if multiple_value_matching and vr in MULTIPLE_VALUE_VRS and "\\" in value:
        return Match(tag, vr, MatchKind.ALL, values)
    return Match(tag, vr, MatchKind.LIST, values)


def _split_range(name: str, vr: str, value: str) -> tuple[str, str]:
    """`lower-upper`, either side may be open. A DT bound may end in a negative UTC offset
    (`-0500`), so each hyphen is tried until both sides are valid."""
    pattern = SHAPES[vr]
    for i in (i for i, ch in enumerate(value) if ch == "-"):
        lower, upper = value[:i], value[i + 1 :]
        if not lower and not upper:
            raise InvalidQuery(f"{name}: a range needs at least one bound")
        if all(pattern.fullmatch(b) for b in (lower, upper) if b):
            for bound in (lower, upper):
                if bound:
                    _check_calendar(name, vr, bound)
            if lower and upper and _sortable(lower) > _sortable(upper):
                raise InvalidQuery(f"{name}: range {value!r} ends before it starts")
            return lower, upper
    for bound in value.split("-"):
        if bound:
            _check_temporal(name, vr, bound)
    raise InvalidQuery(f"{name}: {value!r} is not a valid {vr} range")


def _sortable(bound: str) -> str:
    return bound[:-5] if len(bound) > 5 and bound[-5] in "+-" else bound


def _check_temporal(name: str, vr: str, value: str) -> None:
    pattern = SHAPES[vr]
    if not pattern.fullmatch(value):
        raise InvalidQuery(f"{name}: {value!r} is not a valid {vr} value ({WRITTEN[vr]})")
    _check_calendar(name, vr, value)


def _check_calendar(name: str, vr: str, value: str) -> None:
    # PS3.5 Table 6.2-1: a value names a real date or time; one that cannot match anything
    # (20230230) is a mistake of the query, said as such rather than answered with nothing.
    fault = calendar_fault(vr, value)
    if fault is not None:
        raise InvalidQuery(f"{name}: {value!r} is not a valid {vr} value ({fault})")


def _count(name: str, value: str) -> int:
    return numbers.parse_integer(value, name, 0, _MAX_LIMIT)


def parse_boolean(name: str, value: str) -> bool:
    """A flag of a query (`true` or `false`, any case)."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidQuery(f"{name} must be true or false, not {value!r}")
