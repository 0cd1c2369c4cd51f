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

from dicomweb_server.dicom import uids
from dicomweb_server.dicom.attributes import tag_of_keyword, vr_of
from dicomweb_server.dicom.errors import InvalidAttribute, InvalidQuery, InvalidUID


class MatchKind(StrEnum):
    UNIVERSAL = "universal"  # PS3.4 C.2.2.2.3
    SINGLE = "single"  # C.2.2.2.1
    LIST = "list"  # C.2.2.2.2 (UIDs) and PS3.18 8.3.4.6 multiple values
    WILDCARD = "wildcard"  # C.2.2.2.4
    RANGE = "range"  # C.2.2.2.5


@dataclass(frozen=True)
class Match:
    tag: int
    vr: str
    kind: MatchKind
    values: tuple[str, ...] = ()
    lower: str | None = None
    upper: str | None = None


@dataclass
class SearchRequest:
    matches: list[Match] = field(default_factory=list)
    include_fields: set[int] = field(default_factory=set)
    include_all: bool = False
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False
    # Parameters understood but not honoured: each becomes a `Warning: 299` header.
    warnings: list[str] = field(default_factory=list)


# PS3.4 C.2.2.2.4: wildcards only for these VRs.
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
RANGE_VRS = frozenset({"DA", "TM", "DT"})
_NUMBER_VRS = frozenset({"IS", "SL", "SS", "UL", "US", "SV", "UV", "DS", "FL", "FD"})

_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_DT = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?$")
_HEX_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_MAX_LIMIT_DIGITS = 9

_UNHONOURED = ("emptyvaluematching", "multiplevaluematching")


def parse_attribute_id(text: str) -> int:
    """A keyword (`PatientName`) or an 8-hex tag (`00100010`), PS3.18 8.3.4.1."""
    if _HEX_TAG.match(text):
        return int(text, 16)
    tag = tag_of_keyword(text)
    if tag is None:
        raise InvalidAttribute(f"{text!r} is neither a DICOM keyword nor a tag (8 hex digits)")
    return tag


def parse_search(params: Iterable[tuple[str, str]]) -> SearchRequest:
    request = SearchRequest()
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
                    request.include_fields.add(parse_attribute_id(item))
        elif lowered == "fuzzymatching":
            request.fuzzy = _boolean(name, value)
        elif lowered in _UNHONOURED:
            request.warnings.append(f"the {name} parameter is not supported and was ignored")
        elif "." in name:
            request.warnings.append(
                f"sequence matching on {name!r} is not supported and was ignored"
            )
        else:
            request.matches.append(parse_match(name, value))
    return request


def parse_match(name: str, value: str) -> Match:
    tag = parse_attribute_id(name)
    vr = vr_of(tag)
    if value == "":
        return Match(tag, vr, MatchKind.UNIVERSAL)
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
    if vr in RANGE_VRS and "-" in value and not (vr == "DT" and _DT.match(value)):
        lower, _, upper = value.partition("-")
        if not lower and not upper:
            raise InvalidQuery(f"{name}: a range needs at least one bound")
        for bound in (lower, upper):
            if bound:
                _check_temporal(name, vr, bound)
        if lower and upper and lower > upper:
            raise InvalidQuery(f"{name}: range {value!r} ends before it starts")
        return Match(tag, vr, MatchKind.RANGE, lower=lower or None, upper=upper or None)
    if "*" in value or "?" in value:
        if vr not in WILDCARD_VRS:
            raise InvalidQuery(f"{name}: wildcards are not allowed on {vr} values")
        return Match(tag, vr, MatchKind.WILDCARD, (value,))
    separators = r"[,\\]" if vr == "CS" else r"\\"
    values = tuple(v for v in re.split(separators, value) if v)
    for v in values:
        if vr in RANGE_VRS:
            _check_temporal(name, vr, v)
        elif vr in _NUMBER_VRS and not _NUMBER.match(v):
            raise InvalidQuery(f"{name}: {v!r} is not a number")
    if len(values) == 1:
        return Match(tag, vr, MatchKind.SINGLE, values)
    return Match(tag, vr, MatchKind.LIST, values)


def _check_temporal(name: str, vr: str, value: str) -> None:
    pattern = {"DA": _DA, "TM": _TM, "DT": _DT}[vr]
    if not pattern.match(value):
        shape = {"DA": "YYYYMMDD", "TM": "HHMMSS.FFFFFF", "DT": "YYYYMMDDHHMMSS.FFFFFF&ZZXX"}
        raise InvalidQuery(f"{name}: {value!r} is not a valid {vr} value ({shape[vr]})")


def _count(name: str, value: str) -> int:
    if not value.isdigit() or len(value) > _MAX_LIMIT_DIGITS:
        raise InvalidQuery(f"{name} must be a whole number from 0 to 999999999, not {value!r}")
    return int(value)


def _boolean(name: str, value: str) -> bool:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidQuery(f"{name} must be true or false, not {value!r}")
