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

from dicomweb_server.dicom.scan import BINARY_VRS, tag_path

JsonDict = dict[str, Any]
BulkDataURIFactory = Callable[[str], str]

_STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
_INT_VRS = frozenset({"IS", "SL", "SS", "SV", "UL", "US", "UV"})
_FLOAT_VRS = frozenset({"DS", "FL", "FD"})


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
    if vr in _STRING_VRS:
        return str(v)
    if vr in _INT_VRS:
        return int(v)
    if vr in _FLOAT_VRS:
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
    groups = list(name.components)
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
        if vr == "IS" and any(v and not v.lstrip("+-").isdigit() for v in items):
            return None
        if vr == "DS" and any(v and not _DS.match(v) for v in items):
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


_DS = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
