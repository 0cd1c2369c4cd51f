"""The DICOM JSON Model (PS3.18 Annex F) of a data set, built once at ingest.

Unlike pydicom's own `to_json_dict`, this never reads a value it will replace with a
BulkDataURI (so deferred values stay on disk), it knows the full path of a value inside
sequences, and one malformed value degrades to its text instead of failing the whole object.
"""

from __future__ import annotations

import base64
import math
import re
import struct
from collections.abc import Callable, Iterable
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from dicomweb_server.dicom.scan import tag_path
from dicomweb_server.dicom.vr import (
    ALL_VRS,
    BINARY_VRS,
    DECIMAL_VRS,
    FLOAT_VRS,
    INTEGER_RANGES,
    INTEGER_VRS,
    STRING_VRS,
)

JsonDict = dict[str, Any]
BulkDataURIFactory = Callable[[str], str]


def dataset_to_json(
    ds: Dataset,
    bulk_paths: Iterable[str],
    bulk_data_uri: BulkDataURIFactory,
    *,
    extra_bulk: dict[str, str] | None = None,
    fast: bool = True,
) -> JsonDict:
    """Return the DICOM JSON object of `ds` (PS3.18 F.2).

    `bulk_paths` are the paths (see `scan.tag_path`) of values given as BulkDataURI;
    `bulk_data_uri(path)` mints the URI. `extra_bulk` maps paths of top-level elements the
    data set does not hold (Pixel Data read with stop_before_pixels) to their VR.

    With `fast`, values still in their encoded form are converted straight from their bytes
    where that is exact (see `_fast_element`); the result is the same either way.
    """
    # Raw values are read as explicit VR little endian: only such data sets take the fast path.
    fast = fast and getattr(ds, "original_encoding", (None, None))[1] is True
    codec = _codec(ds, _DEFAULT_CODEC) if fast else None
    result = _convert(ds, (), frozenset(bulk_paths), bulk_data_uri, codec, fast)
    for path, vr in (extra_bulk or {}).items():
        result[path] = {"vr": vr, "BulkDataURI": bulk_data_uri(path)}
    return dict(sorted(result.items()))


def _convert(
    ds: Dataset,
    path: tuple[int | str, ...],
    bulk: frozenset[str],
    uri: BulkDataURIFactory,
    codec: str | None,
    fast: bool,
) -> JsonDict:
    out: JsonDict = {}
    # keys(), not iteration: iterating a Dataset converts raw elements and reads deferred values.
    for base_tag in ds.keys():  # noqa: SIM118
        tag = int(base_tag)
        # Group lengths (gggg,0000) are retired and would be wrong after any coercion.
        if tag & 0xFFFF == 0 or tag >> 16 in (0x0000, 0x0002):
            continue
        key = f"{tag:08X}"
        raw = ds.get_item(tag)
        vr = str(raw.VR or "UN")
        here = (*path, tag)
        if vr in BINARY_VRS and tag_path(here) in bulk:
            out[key] = {"vr": vr, "BulkDataURI": uri(tag_path(here))}
            continue
        if (
            fast
            and isinstance(raw, RawDataElement)
            # None: read implicitly; UN: pydicom may know the real VR. Both take pydicom's way.
            and raw.VR not in (None, "UN")
            and isinstance(raw.value, bytes)
        ):
            converted = _fast_element(vr, raw.value, codec)
            if converted is not None:
                out[key] = converted
                continue
        out[key] = _element(ds, tag, vr, raw, here, bulk, uri, codec, fast)
    return out


def _element(
    ds: Dataset,
    tag: int,
    vr: str,
    raw: RawDataElement | DataElement,
    path: tuple[int | str, ...],
    bulk: frozenset[str],
    uri: BulkDataURIFactory,
    codec: str | None,
    fast: bool,
) -> JsonDict:
    try:
        elem = ds[tag]
    except (ValueError, TypeError, KeyError, LookupError, OverflowError):
        return _raw_text(vr, raw)
    vr = str(elem.VR)
    value = elem.value
    if vr == "SQ":
        items = [
            _convert(item, (*path, str(i)), bulk, uri, _codec(item, codec), fast)
            for i, item in enumerate(value or [])
        ]
        return {"vr": vr, "Value": items} if items else {"vr": vr}
    if value is None or value == "" or value == b"":
        return {"vr": vr}
    if vr in BINARY_VRS:
        data = value if isinstance(value, bytes) else b"".join(value)
        return {"vr": vr, "InlineBinary": base64.b64encode(data).decode("ascii")}
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    try:
        converted = [_value(vr, v) for v in values]
    except (ValueError, TypeError, OverflowError):
        return _raw_text(vr, raw)
    return {"vr": vr, "Value": converted}


def _value(vr: str, v: Any) -> Any:
    if v is None or v == "":
        return None
    if vr == "PN":
        return _person_name(v)
    if vr in STRING_VRS:
        return str(v).replace("\x00", "")
    if vr in INTEGER_VRS:
        return int(v)
    if vr in DECIMAL_VRS:
        f = float(v)
        # JSON has no NaN or infinity: keep the text rather than lose the value.
        if not math.isfinite(f):
            return str(v)
        return int(f) if vr == "DS" and f.is_integer() and abs(f) < 2**53 else f
    if vr == "AT":
        return f"{int(v):08X}"
    return str(v)


def _person_name(v: Any) -> dict[str, str]:
    # PS3.18 F.2.2: a PN value is an object of up to three component groups.
    name = v if isinstance(v, PersonName) else PersonName(str(v))
    groups = [text.replace("\x00", "") for text in name.components]
    out: dict[str, str] = {}
    for label, text in zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False):
        if text:
            out[label] = text
    return out


def _raw_text(vr: str, raw: RawDataElement | DataElement) -> JsonDict:
    """A value pydicom cannot convert: keep its characters so nothing is silently lost."""
    data = raw.value
    if isinstance(data, bytes):
        text = data.decode("latin-1").rstrip("\x00 ")
    else:
        text = "" if data is None else str(data)
    text = text.replace("\x00", "")
    if not text:
        return {"vr": vr}
    return {"vr": vr, "Value": [part.strip() or None for part in text.split("\\")]}


# -- the fast path ---------------------------------------------------------------------------
# pydicom decodes most VRs with its default encoding (ISO 8859-1) and text VRs with the
# Specific Character Set; the rules below follow pydicom 3's converters value for value
# (tests/unit/dicom/test_json_model.py compares both paths on every bundled file).

_DEFAULT_CODEC = "latin-1"
_SIMPLE_CHARSETS = {
    "": "latin-1",
    "ISO_IR 6": "latin-1",
    "ISO_IR 100": "latin-1",
    "ISO_IR 192": "utf-8",
}
_RSTRIP_ALL_THEN_SPLIT = frozenset({"AS", "CS", "DA", "DT", "TM", "UI"})
_SPLIT_THEN_RSTRIP = frozenset({"LO", "SH", "UC"})
_SINGLE_TEXT = frozenset({"LT", "ST", "UT"})
_STRUCTS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}


def _codec(ds: Dataset, inherited: str | None) -> str | None:
    """The Python codec of a data set's text, when it is a single simple character set."""
    raw = ds.get_item(0x00080005)
    if raw is None:
        return inherited
    value = raw.value
    if isinstance(value, bytes):
        text = value.decode("latin-1").strip(" \x00")
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None  # several character sets (code extensions): pydicom decodes those
    return _SIMPLE_CHARSETS.get(text)


def _fast_element(vr: str, data: bytes, codec: str | None) -> JsonDict | None:
    """The JSON of one encoded value, or None where pydicom must decide."""
    if not data:
        return {"vr": vr} if vr != "SQ" else None
    try:
        if vr in BINARY_VRS:
            return {"vr": vr, "InlineBinary": base64.b64encode(data).decode("ascii")}
        if vr in _STRUCTS:
            code = _STRUCTS[vr]
            size = struct.calcsize(code)
            if len(data) % size:
                return None
            numbers = struct.unpack(f"<{len(data) // size}{code}", data)
            return {"vr": vr, "Value": [_value(vr, n) for n in numbers]}
        if vr == "AT":
            if len(data) % 4:
                return None
            pairs = struct.unpack(f"<{len(data) // 2}H", data)
            tags = [f"{pairs[i]:04X}{pairs[i + 1]:04X}" for i in range(0, len(pairs), 2)]
            return {"vr": vr, "Value": tags}
        # PS3.5 6.1: NUL is in no character repertoire of DICOM, only padding (6.2); one
        # inside a text value is dropped here (the object keeps its bytes), as neither
        # PostgreSQL text nor jsonb can hold it.
        data = data.replace(b"\x00", b"")
        if vr == "AE":
            items = [v.strip() for v in data.decode(_DEFAULT_CODEC).split("\\")]
        elif vr in _RSTRIP_ALL_THEN_SPLIT:
            items = data.decode(_DEFAULT_CODEC).rstrip(" \x00").split("\\")
        elif vr == "UR":
            items = [data.decode(_DEFAULT_CODEC).rstrip()]
        elif vr in ("IS", "DS"):
            items = [v.strip() for v in data.decode(_DEFAULT_CODEC).split("\\")]
        elif codec is None:
            return None
        elif vr in _SPLIT_THEN_RSTRIP:
            items = [v.rstrip("\x00 ") for v in data.decode(codec).split("\\")]
        elif vr in _SINGLE_TEXT:
            items = [data.decode(codec).rstrip("\x00 ")]
        elif vr == "PN":
            names = data.decode(codec).rstrip("\x00 ").split("\\")
            return {"vr": vr, "Value": [_name_groups(n) for n in names]}
        else:
            return None
        if vr == "IS" and any(v and not _IS.fullmatch(v) for v in items):
            return None
        if vr == "DS" and any(v and not _DS.fullmatch(v) for v in items):
            return None
        values = [None if v == "" else _value(vr, v) for v in items]
    except (UnicodeDecodeError, ValueError, OverflowError, struct.error):
        return None
    if all(v is None for v in values) and len(values) == 1:
        return {"vr": vr}
    return {"vr": vr, "Value": values}


def _name_groups(name: str) -> dict[str, str] | None:
    if not name:
        return None
    out: dict[str, str] = {}
    for label, text in zip(
        ("Alphabetic", "Ideographic", "Phonetic"), name.split("="), strict=False
    ):
        if text:
            out[label] = text
    return out


# PS3.5 Table 6.2-1: IS is at most 12 characters, DS at most 16.
_IS = re.compile(r"[+-]?[0-9]{1,11}", re.ASCII)
_DS = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)


# -- received DICOM JSON ---------------------------------------------------------------------

_TAG_KEY = re.compile(r"[0-9A-F]{8}", re.ASCII)
_BASE64 = re.compile(r"[A-Za-z0-9+/\s]*={0,2}\s*", re.ASCII)
_NAME_GROUPS = frozenset({"Alphabetic", "Ideographic", "Phonetic"})
_UI = re.compile(r"[0-9.]{1,64}", re.ASCII)
# The data dictionary's ambiguous VRs, each checked as its widest reading.
_AMBIGUOUS_VRS = {"OB or OW": "OB", "US or SS": "SL", "US or OW": "OW", "US or SS or OW": "OW"}


def validate_json(item: object) -> None:
    """Check one received DICOM JSON object against PS3.18 F.2 before it is converted:
    tags are 8 hex digits, every VR is one of PS3.5 6.2, and each value has the JSON type
    and range its VR allows (F.2.3: US, SS, UL, SL, UV, SV, FL, FD as numbers in range; IS
    and DS as numbers or their string form; PN as objects of component groups; InlineBinary
    base64 and only for binary VRs). Raises ValueError naming the first fault; the caller
    has measured the nesting (depth.check_json), so the walk may recurse."""
    if not isinstance(item, dict):
        raise ValueError("a data set is not a JSON object")
    for key, element in item.items():
        if not _TAG_KEY.fullmatch(key.upper()):
            raise ValueError(f"{key[:20]!r} is not a tag (8 hex digits)")
        if not isinstance(element, dict):
            raise ValueError(f"{key}: the element is not a JSON object")
        vr = element.get("vr")
        if isinstance(vr, str) and vr in _AMBIGUOUS_VRS:
            # pydicom writes the data dictionary's "OB or OW" where the VR depends on
            # other attributes; its reader takes it back, and so do we.
            vr = _AMBIGUOUS_VRS[vr]
        if vr not in ALL_VRS:
            raise ValueError(f"{key}: {str(vr)[:8]!r} is not a VR of PS3.5 6.2")
        forms = [f for f in ("Value", "InlineBinary", "BulkDataURI") if f in element]
        if len(forms) > 1:
            raise ValueError(f"{key}: an element has one of Value, InlineBinary, BulkDataURI")
        if "InlineBinary" in element:
            text = element["InlineBinary"]
            if vr not in BINARY_VRS or not isinstance(text, str) or not _BASE64.fullmatch(text):
                raise ValueError(
                    f"{key}: InlineBinary is base64 of a {', '.join(sorted(BINARY_VRS))} value"
                )
        elif "BulkDataURI" in element:
            if not isinstance(element["BulkDataURI"], str):
                raise ValueError(f"{key}: BulkDataURI is not a string")
        elif "Value" in element:
            values = element["Value"]
            if not isinstance(values, list):
                raise ValueError(f"{key}: Value is not an array")
            if vr in BINARY_VRS and values:
                raise ValueError(f"{key}: a {vr} value is given as InlineBinary or BulkDataURI")
            for value in values:
                if value is not None:
                    _check_value(key, vr, value)


def _check_value(key: str, vr: str, value: object) -> None:
    def fault(what: str) -> ValueError:
        return ValueError(f"{key}: {str(value)[:40]!r} is not {what} (VR {vr})")

    if vr == "SQ":
        validate_json(value)
    elif vr == "PN":
        if not isinstance(value, dict) or not set(value) <= _NAME_GROUPS:
            raise fault("an object of Alphabetic, Ideographic and Phonetic names")
        if not all(isinstance(v, str) for v in value.values()):
            raise fault("a person name")
    elif vr in INTEGER_RANGES:
        low, high = INTEGER_RANGES[vr]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise fault(f"a whole number from {low} to {high}")
    elif vr in FLOAT_VRS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fault("a number")
    elif vr == "IS":
        ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**31
        if not ok and not (isinstance(value, str) and _IS.fullmatch(value.strip())):
            raise fault("an integer string")
    elif vr == "DS":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok and not (isinstance(value, str) and _DS.fullmatch(value.strip())):
            raise fault("a decimal string")
    elif vr == "AT":
        if not isinstance(value, str) or not _TAG_KEY.fullmatch(value.upper()):
            raise fault("a tag of 8 hex digits")
    elif vr == "UI":
        # PS3.5 9.1 characters; leading zeros in a component, common in old data, pass.
        if not isinstance(value, str) or not _UI.fullmatch(value):
            raise fault("a UID of digits and dots")
    elif not isinstance(value, str):
        raise fault("a string")
