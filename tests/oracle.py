"""A reference matcher: PS3.4 C.2.2.2 matching in plain Python over pydicom data sets.

It knows nothing of SQL or of the stored JSON: it reads the values pydicom gives for the
data sets that were stored. The property test in tests/api/test_qido_oracle.py asks the
server and this matcher the same random questions and expects the same answers.

Rules (as written in docs/conformance.md):
- a multi-valued attribute matches when one of its values does; a sequence when one item
  matches every key given inside it;
- single values match exactly and case-sensitively, except person names, which compare
  case-insensitively (Python upper-casing for the indexed PatientName and
  ReferringPhysicianName, ASCII letters for the others) and group by group when the value
  has `=`; numbers compare as numbers;
- `*` is any run of characters and `?` exactly one;
- a date/time range includes its bounds, and an upper bound includes every value it begins;
- EMPTY: the attribute is absent or holds no value; ALL: every value listed is held;
- fuzzy: a name matches when one of its components (in any group) begins with the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from dicomweb_server.dicom.matching import NUMBER_VRS, Key, Match, MatchKind, SequenceMatch

# Names with index columns fold case as Python does; the others fold ASCII letters only.
INDEXED_NAMES = frozenset({0x00100010, 0x00080090})
_ASCII = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def matches(entity: Dataset, keys: Iterable[Key], fuzzy: bool = False, top: bool = True) -> bool:
    return all(_key(entity, key, fuzzy, top) for key in keys)


def values_of(ds: Dataset, tag: int) -> list[Any]:
    if tag not in ds:
        return []
    value = ds[tag].value
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list) or ds[tag].VR == "SQ":
        return [v for v in value if v not in (None, "")]
    return [value]


def _key(ds: Dataset, key: Key, fuzzy: bool, top: bool) -> bool:
    if isinstance(key, SequenceMatch):
        return any(matches(item, key.keys, fuzzy, top=False) for item in values_of(ds, key.tag))
    held = values_of(ds, key.tag)
    if key.kind is MatchKind.UNIVERSAL:
        return True
    if key.kind is MatchKind.EMPTY:
        return not held
    singles = [Match(key.tag, key.vr, MatchKind.SINGLE, (v,)) for v in key.values]
    if key.kind is MatchKind.ALL:
        return all(any(_value(v, m, fuzzy, top) for v in held) for m in singles)
    if key.kind is MatchKind.LIST:
        return any(_value(v, m, fuzzy, top) for v in held for m in singles)
    return any(_value(v, key, fuzzy, top) for v in held)


def _value(value: Any, key: Match, fuzzy: bool, top: bool) -> bool:
    if key.vr == "PN":
        return _name(
            PersonName(str(value)) if not isinstance(value, PersonName) else value, key, fuzzy, top
        )
    if key.vr in NUMBER_VRS:
        return float(value) == float(key.values[0])
    return _text(str(value), key, lambda s: s)


def _text(value: str, key: Match, fold: Any) -> bool:
    if key.kind is MatchKind.SINGLE:
        return fold(value) == fold(key.values[0])
    if key.kind is MatchKind.WILDCARD:
        return _wildcard(fold(key.values[0])).fullmatch(fold(value)) is not None
    if key.kind is MatchKind.RANGE:
        if value == "":
            return False
        if key.lower is not None and value < key.lower:
            return False
        return key.upper is None or value[: len(key.upper)] <= key.upper
    raise AssertionError(key.kind)


def _wildcard(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern:
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _name(name: PersonName, key: Match, fuzzy: bool, top: bool) -> bool:
    def fold(s: str) -> str:
        return s.upper() if top and key.tag in INDEXED_NAMES else s.translate(_ASCII)

    groups = [name.alphabetic, name.ideographic, name.phonetic]
    if fuzzy and key.kind is not MatchKind.RANGE:
        pattern = _wildcard(fold(key.values[0]))
        for group in groups:
            folded = fold(group)
            starts = [0] + [i + 1 for i, ch in enumerate(folded) if ch == "^"]
            if group and any(pattern.match(folded[i:]) for i in starts):
                return True
        return False
    value = key.values[0]
    if "=" in value:
        return all(
            bool(group) and _text(group, Match(key.tag, key.vr, key.kind, (part,)), fold)
            for group, part in zip(groups, value.split("="), strict=False)
            if part
        )
    return any(group and _text(group, key, fold) for group in groups)
